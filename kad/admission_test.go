package kad_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

func storedProviders(t testing.TB, st store.Store) int64 {
	t.Helper()
	s, err := st.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.ProviderRecords
}

// One peer past its burst, with its next token too far away, is refused and
// counted; another peer has its own bucket.
func TestPeerWriteLimit(t *testing.T) {
	n := newKadNode(t, nil, kad.PeerWriteLimit(0.001, 5)) // a token every 1000 s after 5
	flooder := newKadNode(t, nil)
	other := newKadNode(t, nil)
	connect(t, flooder.h, n.h)
	connect(t, other.h, n.h)
	keys := func(prefix string, k int) [][]byte {
		var out [][]byte
		for i := range k {
			out = append(out, []byte(fmt.Sprintf("%s-%d", prefix, i)))
		}
		return out
	}
	rejected := func() float64 {
		return metric(t, n.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": "rate_limited"})
	}
	ctx := ctxTimeout(t, 30*time.Second)
	// ADD_PROVIDER is not answered: the sender learns nothing, the node
	// stores 5 records and resets the stream at the 6th.
	_ = flooder.SendAddProviders(ctx, n.h.ID(), keys("f", 10)...)
	p2ptest.WaitUntil(t, 30*time.Second, "the refusal to be counted", func() bool { return rejected() == 1 })
	if got := storedProviders(t, n.st); got != 5 {
		t.Fatalf("stored %d records of the flooder, want its burst of 5", got)
	}
	// The flooder stays refused on a new stream.
	_ = flooder.SendAddProviders(ctx, n.h.ID(), keys("g", 1)...)
	p2ptest.WaitUntil(t, 30*time.Second, "the second refusal", func() bool { return rejected() == 2 })
	// Another peer is not affected.
	if err := other.SendAddProviders(ctx, n.h.ID(), keys("o", 3)...); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "the other peer's records", func() bool { return storedProviders(t, n.st) == 8 })
	if rejected() != 2 {
		t.Fatalf("rate_limited = %v, want 2", rejected())
	}
}

// A bounded flood: one peer sends ADD_PROVIDER as fast as it can on 4
// streams while another peer's GET_PROVIDERS keep being answered; the
// flooder's records are stored at no more than the burst plus the rate.
func TestFloodKeepsOthersServed(t *testing.T) {
	const rate, burst = 200, 100
	n := newKadNode(t, nil, kad.PeerWriteLimit(rate, burst))
	flooder := newKadNode(t, nil)
	victim := newHost(t)
	connect(t, flooder.h, n.h)
	ctx, cancel := context.WithCancel(ctxTimeout(t, 30*time.Second))
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				batch := make([][]byte, 50)
				for j := range batch {
					batch[j] = []byte(fmt.Sprintf("w%d-%d-%d", w, i, j))
				}
				_ = flooder.SendAddProviders(ctx, n.h.ID(), batch...)
			}
		})
	}
	s := rawStream(t, victim, n)
	r := newReader(s)
	for i := range 200 {
		resp := roundTrip(t, s, r, &pb.Message{Type: pb.GetProviders, Key: []byte(fmt.Sprintf("v%d", i))})
		if resp.Type != pb.GetProviders {
			t.Fatalf("GET_PROVIDERS answered with %v", resp.Type)
		}
	}
	cancel()
	wg.Wait()
	elapsed := time.Since(start)
	stored := storedProviders(t, n.st)
	if limit := int64(burst + rate*elapsed.Seconds() + rate/10); stored > limit {
		t.Fatalf("flooder stored %d records in %v, more than burst %d + %d/s", stored, elapsed, burst, rate)
	}
	if stored < burst {
		t.Fatalf("flooder stored %d records, less than its burst %d", stored, burst)
	}
}

// Received provider addresses: a trailing /p2p of the provider is stripped,
// duplicates dropped, an address naming another peer dropped, private and
// loopback addresses filtered by AddressFilter, and the rest trimmed to
// MaxProviderAddrs. A record left without addresses is still stored.
func TestProviderAddressHygiene(t *testing.T) {
	n := newKadNode(t, nil, kad.MaxProviderAddrs(2), kad.AddressFilter(kad.PublicAddrs))
	sender := newHost(t)
	other := newHost(t)
	addr := func(s string) []byte { return ma.StringCast(s).Bytes() }
	self := "/p2p/" + sender.ID().String()
	send := func(key string, addrs ...[]byte) {
		s := rawStream(t, sender, n)
		if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte(key),
			ProviderPeers: []pb.Peer{{ID: []byte(sender.ID()), Addrs: addrs}}})); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
	}
	stored := func(key string) []ma.Multiaddr {
		var recs []store.ProviderRecord
		p2ptest.WaitUntil(t, 30*time.Second, "the record of "+key, func() bool {
			var err error
			recs, err = n.st.Providers(context.Background(), []byte(key), 0)
			return err == nil && len(recs) == 1
		})
		return recs[0].Addrs
	}
	send("k1",
		addr("/ip4/1.2.3.4/tcp/4001"+self),
		addr("/ip4/1.2.3.4/tcp/4001"), // the same once /p2p is stripped
		addr("/ip4/1.2.3.5/tcp/4001/p2p/"+other.ID().String()),
		addr("/ip4/127.0.0.1/tcp/4001"),
		addr("/ip4/10.0.0.1/tcp/4001"),
		addr("/ip4/192.168.1.1/tcp/4001"+self),
		addr("/ip4/1.2.3.6/udp/4001/quic-v1"),
		addr("/ip4/1.2.3.7/tcp/4001"),
	)
	got := stored("k1")
	want := []ma.Multiaddr{ma.StringCast("/ip4/1.2.3.4/tcp/4001"), ma.StringCast("/ip4/1.2.3.6/udp/4001/quic-v1")}
	if !slices.EqualFunc(got, want, ma.Multiaddr.Equal) {
		t.Fatalf("stored addresses %v, want %v", got, want)
	}
	send("k2", addr("/ip4/127.0.0.1/tcp/4001"), addr("/ip4/10.0.0.1/tcp/4001"))
	if got := stored("k2"); len(got) != 0 {
		t.Fatalf("private addresses stored: %v", got)
	}

	// Without a filter (the default), loopback addresses are kept.
	open := newKadNode(t, nil)
	s := rawStream(t, sender, open)
	if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte("k3"),
		ProviderPeers: []pb.Peer{{ID: []byte(sender.ID()), Addrs: [][]byte{addr("/ip4/127.0.0.1/tcp/4001" + self)}}}})); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "the loopback address", func() bool {
		recs, err := open.st.Providers(context.Background(), []byte("k3"), 0)
		return err == nil && len(recs) == 1 && len(recs[0].Addrs) == 1 && recs[0].Addrs[0].Equal(ma.StringCast("/ip4/127.0.0.1/tcp/4001"))
	})
}

// The node's own provider record is trimmed to MaxProviderAddrs, so a store
// with a lower Limits.MaxAddrs than the default accepts it.
func TestOwnRecordTrimmedToStoreLimit(t *testing.T) {
	var listen []string
	for range 6 {
		listen = append(listen, "/ip4/127.0.0.1/tcp/0")
	}
	h := p2ptest.NewHost(t, libp2pListen(listen...))
	if len(h.Addrs()) <= 4 {
		t.Fatalf("host has %d addresses, want more than 4", len(h.Addrs()))
	}
	st := memstore.New(store.Options{Limits: store.Limits{MaxAddrs: 4}})
	t.Cleanup(func() { st.Close() })
	n := newKadNodeOn(t, h, st, kad.MaxProviderAddrs(4))
	if err := n.ProvideKey(ctxTimeout(t, 30*time.Second), []byte("own"), false); err != nil {
		t.Fatalf("own provide refused: %v", err)
	}
	recs, err := st.Providers(context.Background(), []byte("own"), 0)
	if err != nil || len(recs) != 1 || len(recs[0].Addrs) != 4 {
		t.Fatalf("own record: %v, %v", recs, err)
	}
}

// PUT_VALUE takes a token before the record is validated, so a peer over
// its rate is refused even for records the validator would refuse anyway.
func TestPeerWriteLimitPutValue(t *testing.T) {
	n := newKadNode(t, nil, kad.PeerWriteLimit(0.001, 1))
	sender := newHost(t)
	rejected := func(reason string) float64 {
		return metric(t, n.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": reason})
	}
	put := &pb.Message{Type: pb.PutValue, Key: []byte("/x/a"), Record: &pb.Record{Key: []byte("/x/a"), Value: []byte("v")}}
	for _, want := range []string{"unknown_namespace", "rate_limited"} {
		s := rawStream(t, sender, n)
		if _, err := s.Write(frame(put)); err != nil {
			t.Fatal(err)
		}
		expectReset(t, s)
		p2ptest.WaitUntil(t, 30*time.Second, want, func() bool { return rejected(want) == 1 })
	}
}
