package jobs_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/kad/jobs"
	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// key returns the i-th test key, a sha2-256 multihash.
func key(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	sum := sha256.Sum256(b[:])
	m, _ := mh.Encode(sum[:], mh.SHA2_256)
	return m
}

// fakeNet is a network of fake peers that records what each one receives.
type fakeNet struct {
	self  peer.ID
	mu    sync.Mutex
	peers []peer.ID
	got   map[peer.ID]map[string]int // peer -> key -> times received
	// lookups counts Lookup calls.
	lookups atomic.Int64
	// onSend, if set, runs before each send (fault injection).
	onSend func()
	// exact, if > 0, makes Lookup return only the exact peers closest to
	// the target, as a real lookup that learned nothing else would;
	// otherwise Lookup returns every peer.
	exact int
}

func newFakeNet(t testing.TB, n int) *fakeNet {
	f := &fakeNet{self: storetest.NewPeer(t), got: map[peer.ID]map[string]int{}}
	for range n {
		f.addPeer(storetest.NewPeer(t))
	}
	return f
}

func (f *fakeNet) addPeer(p peer.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = append(f.peers, p)
}

func (f *fakeNet) Self() peer.ID { return f.self }

func (f *fakeNet) Lookup(ctx context.Context, target record.KadKey) ([]peer.ID, error) {
	f.lookups.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.exact > 0 {
		return jobs.Closest(target, f.peers, f.exact), nil
	}
	return slices.Clone(f.peers), nil
}

func (f *fakeNet) RoutingPeers() []peer.ID { return nil }

func (f *fakeNet) receive(p peer.ID, keys [][]byte) {
	if f.onSend != nil {
		f.onSend()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.got[p]
	if m == nil {
		m = map[string]int{}
		f.got[p] = m
	}
	for _, k := range keys {
		m[string(k)]++
	}
}

func (f *fakeNet) SendProviders(ctx context.Context, p peer.ID, recs []store.ProviderRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		if r.Provider != f.self {
			panic("reprovided a record of another peer")
		}
		keys[i] = r.Key
	}
	f.receive(p, keys)
	return nil
}

func (f *fakeNet) SendValues(ctx context.Context, p peer.ID, recs []store.ValueRecord) error {
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		keys[i] = r.Key
	}
	f.receive(p, keys)
	return nil
}

func (f *fakeNet) received(p peer.ID, k []byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[p][string(k)]
}

var epoch = time.UnixMilli(1_800_000_000_000)

// fill stores n own provider records and m records of another provider.
func fill(t testing.TB, s store.Store, self peer.ID, n, m int, now time.Time) {
	t.Helper()
	other := storetest.NewPeer(t)
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}
	batch := make([]store.ProviderRecord, 0, 1000)
	flush := func() {
		if err := s.AddProviders(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range n + m {
		p := self
		if i >= n {
			p = other
		}
		batch = append(batch, store.ProviderRecord{Key: key(i), Provider: p, Addrs: addrs, Expires: now.Add(time.Hour)})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}

func TestReprovideOneCycleHoldsOnePage(t *testing.T) {
	const n, pageSize, k = 200_000, 1000, 20
	clock := storetest.NewClock(epoch)
	s := memstore.New(store.Options{Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	net := newFakeNet(t, 200)
	fill(t, s, net.self, n, 5000, clock.Now())

	r := jobs.NewReprovider(s, net, jobs.WalkOptions{PageSize: pageSize, K: k, Now: clock.Now})
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := r.Progress()
	if p.Done != n || p.Cycles != 1 {
		t.Fatalf("done %d of %d, cycles %d", p.Done, n, p.Cycles)
	}
	if p.MaxHeld > pageSize || p.MaxHeld == 0 {
		t.Fatalf("held up to %d records at once, page size %d", p.MaxHeld, pageSize)
	}
	if p.Sent != n*k {
		t.Fatalf("sent %d records, want %d", p.Sent, n*k)
	}
	// 200 peers, k = 20: regions of 2 bits (4 regions of about 50 peers),
	// 1 estimate lookup, then each region is split until its parts hold
	// fewer than k peers: about 7 lookups a region. Far fewer than 16 a
	// region, the bound of an exploration that split too deep.
	if got := net.lookups.Load(); got != p.Lookups || got > 1+4*16 {
		t.Fatalf("%d lookups (progress says %d) for %d keys", got, p.Lookups, n)
	}
	t.Logf("%d lookups for %d keys", p.Lookups, n)
	// Every sampled key reached exactly its k closest peers.
	for i := 0; i < n; i += 997 {
		kk := key(i)
		closest := jobs.Closest(record.KadKeyOf(kk), net.peers, k)
		for _, q := range closest {
			if net.received(q, kk) != 1 {
				t.Fatalf("key %d: closest peer %s received it %d times", i, q, net.received(q, kk))
			}
		}
		far := jobs.Closest(record.KadKeyOf(kk), net.peers, len(net.peers))[k:]
		for _, q := range far {
			if net.received(q, kk) != 0 {
				t.Fatalf("key %d went to a peer that is not among its %d closest", i, k)
			}
		}
	}
	// The records' own expiry was refreshed: they outlive the old expiry.
	clock.Advance(2 * time.Hour)
	got, err := s.Providers(context.Background(), key(12345), 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("refreshed record gone after its old expiry: %v %v", got, err)
	}
}

// A lookup learns only the peers closest to its target, so one lookup per
// region does not name the closest peers of every key of a region that holds
// more than k peers (a key near the region's edge has others). The walk must
// find every peer of the region. Regions of 3 bits over 200 peers hold about
// 25 peers each, some fewer than k = 20: then the closest peers of their keys
// lie partly in the sibling region, which the walk must explore too.
func TestReprovideReachesClosestPeersWithExactLookups(t *testing.T) {
	const n, pageSize, k = 20_000, 1000, 20
	for _, bits := range []int{0, 2, 3} { // 0: estimated (2 bits for 200 peers)
		t.Run(fmt.Sprintf("bits=%d", bits), func(t *testing.T) {
			clock := storetest.NewClock(epoch)
			s := memstore.New(store.Options{Now: clock.Now})
			t.Cleanup(func() { s.Close() })
			net := newFakeNet(t, 200)
			net.exact = k
			fill(t, s, net.self, n, 0, clock.Now())
			r := jobs.NewReprovider(s, net, jobs.WalkOptions{PageSize: pageSize, K: k, Now: clock.Now, RegionBits: bits})
			if err := r.RunCycle(context.Background()); err != nil {
				t.Fatal(err)
			}
			p := r.Progress()
			t.Logf("region bits %d: %d lookups for %d keys", p.RegionBits, p.Lookups, n)
			if p.Done != n || p.Sent != n*k {
				t.Fatalf("done %d, sent %d; want %d and %d", p.Done, p.Sent, n, n*k)
			}
			if p.Lookups > n/20 {
				t.Fatalf("%d lookups for %d keys: more than 5%%", p.Lookups, n)
			}
			for i := 0; i < n; i += 37 {
				kk := key(i)
				for _, q := range jobs.Closest(record.KadKeyOf(kk), net.peers, k) {
					if net.received(q, kk) != 1 {
						t.Fatalf("key %d: closest peer %s received it %d times", i, q, net.received(q, kk))
					}
				}
			}
		})
	}
}

func TestReprovideResumesAfterStop(t *testing.T) {
	const n, pageSize = 20_000, 500
	clock := storetest.NewClock(epoch)
	s := memstore.New(store.Options{Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	net := newFakeNet(t, 100)
	fill(t, s, net.self, n, 0, clock.Now())
	state := &jobs.FileState{Path: filepath.Join(t.TempDir(), "jobs.json")}
	opts := jobs.WalkOptions{PageSize: pageSize, K: 20, Now: clock.Now, State: state, RegionBits: 3}

	// The first run stops (the node closes) after about half the records.
	ctx, cancel := context.WithCancel(context.Background())
	var sends atomic.Int64
	net.onSend = func() {
		if sends.Add(1) == 20*(n/pageSize)/2 { // 20 peers a page, half the pages
			cancel()
		}
	}
	first := jobs.NewReprovider(s, net, opts)
	if err := first.RunCycle(ctx); err == nil {
		t.Fatal("the interrupted cycle reported success")
	}
	done1 := first.Progress().Done
	if done1 == 0 || done1 >= n {
		t.Fatalf("first run did %d of %d", done1, n)
	}
	saved, err := state.Load("reprovide")
	if err != nil || saved == nil {
		t.Fatalf("no cursor saved: %v", err)
	}

	net.onSend = nil
	second := jobs.NewReprovider(s, net, opts)
	if err := second.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	done2 := second.Progress().Done
	// The second run does the rest: at most the one page in flight again.
	if done1+done2 < n || done2 > n-done1+pageSize {
		t.Fatalf("first %d + second %d records for %d keys", done1, done2, n)
	}
	for i := range n {
		kk := key(i)
		q := jobs.Closest(record.KadKeyOf(kk), net.peers, 1)[0]
		if net.received(q, kk) == 0 {
			t.Fatalf("key %d never reached its closest peer", i)
		}
	}
	if c, _ := state.Load("reprovide"); c != nil {
		t.Fatal("a finished cycle left its cursor behind")
	}
}

func TestReplicateReachesNewClosestPeer(t *testing.T) {
	clock := storetest.NewClock(epoch)
	s := memstore.New(store.Options{Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	net := newFakeNet(t, 40)
	rec := store.ValueRecord{Key: []byte("/pk/some-key"), Value: []byte("v"), Publisher: storetest.NewPeer(t), Received: clock.Now(), Expires: clock.Now().Add(time.Hour)}
	if err := s.PutValue(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	r := jobs.NewReplicator(s, net, jobs.ReplicatorOptions{WalkOptions: jobs.WalkOptions{K: 20, Now: clock.Now}})
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A peer joins that is closer to the record than every current peer.
	target := record.KadKeyOf(rec.Key)
	var newcomer peer.ID
	for {
		newcomer = storetest.NewPeer(t)
		if jobs.Closest(target, append(slices.Clone(net.peers), newcomer), 1)[0] == newcomer {
			break
		}
	}
	if net.received(newcomer, rec.Key) != 0 {
		t.Fatal("impossible: the newcomer had the record")
	}
	net.addPeer(newcomer)
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if net.received(newcomer, rec.Key) != 1 {
		t.Fatal("replication did not restore the record onto the new closest peer")
	}
}

func TestRepublishRefreshesOwnValues(t *testing.T) {
	clock := storetest.NewClock(epoch)
	s := memstore.New(store.Options{Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	net := newFakeNet(t, 30)
	mine := store.ValueRecord{Key: []byte("/pk/mine"), Value: []byte("v"), Publisher: net.self, Received: clock.Now(), Expires: clock.Now().Add(time.Hour)}
	theirs := store.ValueRecord{Key: []byte("/pk/theirs"), Value: []byte("v"), Publisher: storetest.NewPeer(t), Received: clock.Now(), Expires: clock.Now().Add(time.Hour)}
	for _, r := range []store.ValueRecord{mine, theirs} {
		if err := s.PutValue(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	r := jobs.NewReplicator(s, net, jobs.ReplicatorOptions{Own: true, WalkOptions: jobs.WalkOptions{K: 20, Now: clock.Now}})
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := r.Progress(); p.Done != 1 || p.Sent != 20 {
		t.Fatalf("republish handled %d records, sent %d; want only its own record to 20 peers", p.Done, p.Sent)
	}
	clock.Advance(2 * time.Hour)
	if _, err := s.GetValue(context.Background(), mine.Key); err != nil {
		t.Fatalf("own record not refreshed: %v", err)
	}
	if _, err := s.GetValue(context.Background(), theirs.Key); err == nil {
		t.Fatal("another publisher's record was refreshed")
	}
}

func TestExpirerRemovesExactlyExpiredWhileLookupsGoOn(t *testing.T) {
	clock := storetest.NewClock(epoch)
	s := memstore.New(store.Options{Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	self := storetest.NewPeer(t)
	fill(t, s, self, 3000, 0, clock.Now()) // expire in 1 h
	long := make([]store.ProviderRecord, 0, 500)
	for i := range 500 {
		long = append(long, store.ProviderRecord{Key: key(100_000 + i), Provider: self, Expires: clock.Now().Add(10 * time.Hour)})
	}
	if err := s.AddProviders(context.Background(), long...); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour)

	var expired atomic.Int64
	e := jobs.NewExpirer(s, jobs.ExpirerOptions{Batch: 100, Now: clock.Now, OnExpired: func(n int) { expired.Add(int64(n)) }})
	ctx, cancel := context.WithCancel(context.Background())
	var lookups atomic.Int64
	var lookupErr atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // lookups keep being answered while expiry runs
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			got, err := s.Providers(ctx, key(100_000+i%500), 0)
			if err != nil && ctx.Err() == nil {
				lookupErr.Store(err)
				return
			}
			if err == nil && len(got) != 1 {
				lookupErr.Store("live record missing during expiry")
				return
			}
			lookups.Add(1)
		}
	}()
	n, err := e.RunOnce(context.Background())
	cancel()
	wg.Wait()
	if err != nil || n != 3000 || expired.Load() != 3000 {
		t.Fatalf("removed %d (metric %d), err %v; want 3000", n, expired.Load(), err)
	}
	if v := lookupErr.Load(); v != nil {
		t.Fatalf("lookup during expiry: %v", v)
	}
	st, _ := s.Stats(context.Background())
	if st.ProviderRecords != 500 {
		t.Fatalf("%d records left, want the 500 live ones", st.ProviderRecords)
	}
	if p := e.Progress(); p.Cycles != 1 || p.Done != 3000 {
		t.Fatalf("progress %+v", p)
	}
}

func TestRegionBits(t *testing.T) {
	cases := []struct{ n, k, want int }{{0, 20, 0}, {40, 20, 0}, {80, 20, 1}, {200, 20, 2}, {10_000, 20, 7}, {1 << 40, 20, 32}}
	for _, c := range cases {
		if got := jobs.RegionBits(c.n, c.k); got != c.want {
			t.Errorf("RegionBits(%d, %d) = %d, want %d", c.n, c.k, got, c.want)
		}
	}
}

func TestEstimateNetworkSize(t *testing.T) {
	var peers []peer.ID
	for range 2000 {
		peers = append(peers, storetest.NewPeer(t))
	}
	for range 5 {
		var target record.KadKey
		rand.Read(target[:])
		n := jobs.EstimateNetworkSize(target, peers)
		if n < 500 || n > 8000 { // a factor of 4 either way
			t.Fatalf("estimated %d peers, true 2000", n)
		}
	}
}

// A walk does not look up a part of a region that an earlier lookup of the
// region already settled: a lookup toward a point that learned fewer than k
// peers in a part around it learned them all. On 1 000 peers (regions of 4
// bits, about 3k peers each) a region then costs about 4 lookups, not the
// 7 of looking up each half and quarter in turn, and the k closest peers of
// every key are still reached.
func TestReprovideSkipsSettledParts(t *testing.T) {
	const n, peers, k = 20_000, 1000, 20
	clock := storetest.NewClock(epoch)
	s := memstore.New(store.Options{Now: clock.Now})
	t.Cleanup(func() { s.Close() })
	net := newFakeNet(t, peers)
	net.exact = k
	fill(t, s, net.self, n, 0, clock.Now())
	r := jobs.NewReprovider(s, net, jobs.WalkOptions{K: k, Now: clock.Now, RegionBits: 4})
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := r.Progress()
	perRegion := float64(p.Lookups) / 16
	t.Logf("%d lookups, %.2f per region", p.Lookups, perRegion)
	if p.Done != n || p.Sent != n*k {
		t.Fatalf("done %d, sent %d; want %d and %d", p.Done, p.Sent, n, n*k)
	}
	for i := 0; i < n; i += 7 {
		kk := key(i)
		for _, q := range jobs.Closest(record.KadKeyOf(kk), net.peers, k) {
			if net.received(q, kk) != 1 {
				t.Fatalf("key %d: closest peer %s received it %d times", i, q, net.received(q, kk))
			}
		}
	}
	if perRegion > 5 {
		t.Fatalf("%.2f lookups per region: parts already settled were looked up again", perRegion)
	}
}
