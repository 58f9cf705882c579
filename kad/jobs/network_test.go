package jobs_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/kad/jobs"
	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

func loopbackHost(t testing.TB) host.Host { return p2ptest.NewHost(t) }

type liveNode struct {
	*kad.Node
	st store.Store
}

// startNetwork starts n kadstore server nodes on loopback, each with its own
// memstore, all bootstrapped from the first and with full routing tables.
func startNetwork(t *testing.T, n int, now func() time.Time) []liveNode {
	t.Helper()
	nodes := make([]liveNode, n)
	var boot []peer.AddrInfo
	for i := range nodes {
		h := loopbackHost(t)
		st := memstore.New(store.Options{Now: now})
		t.Cleanup(func() { st.Close() })
		k, err := kad.New(h, st, kad.Mode(kad.ModeServer), kad.BootstrapPeers(boot...),
			kad.RefreshInterval(0), kad.Registerer(prometheus.NewRegistry()), kad.Clock(now))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		nodes[i] = liveNode{k, st}
		if i == 0 {
			boot = []peer.AddrInfo{{ID: h.ID(), Addrs: h.Addrs()}}
		}
	}
	for round := range 2 {
		var wg sync.WaitGroup
		for _, nd := range nodes[1:] {
			wg.Go(func() {
				if err := nd.RefreshRoutingTable(context.Background()); err != nil {
					t.Errorf("refresh round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
	}
	return nodes
}

func p2ids(nodes []liveNode) []peer.ID {
	out := make([]peer.ID, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.Self()
	}
	return out
}

// waitFor polls cond until it holds, failing after timeout with its message.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		<-tick.C
	}
}

// getProviders sends one GET_PROVIDERS to p, the way any peer would, and
// returns the providers it answers with.
func getProviders(t *testing.T, from host.Host, p peer.ID, proto string, key []byte) map[peer.ID]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := from.NewStream(ctx, p, "/ipfs/kad/1.0.0")
	if err != nil {
		t.Fatalf("stream to %s: %v", p, err)
	}
	defer s.Close()
	if err := pb.WriteFrame(s, &pb.Message{Type: pb.GetProviders, Key: key}); err != nil {
		t.Fatal(err)
	}
	b, err := pb.ReadFrame(bufio.NewReader(s), pb.MaxMessageSize)
	if err != nil {
		t.Fatalf("GET_PROVIDERS answer from %s: %v", p, err)
	}
	var m pb.Message
	if err := m.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	out := map[peer.ID]int{}
	for _, pp := range m.ProviderPeers {
		out[peer.ID(pp.ID)] = len(pp.Addrs)
	}
	return out
}

// On a loopback network of 40 nodes, one reprovide cycle of 20 000 own keys
// reaches, for every sampled key, the peers GetClosestPeers names for it, with
// a few lookups instead of one per key. KADSTORE_JOBS_NET_NODES runs it by
// hand on a larger network, where regions have more than zero bits.
func TestReprovideOnLoopbackNetwork(t *testing.T) {
	const keys = 20_000
	nodesN := 40
	if s := os.Getenv("KADSTORE_JOBS_NET_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 40 {
			t.Fatalf("KADSTORE_JOBS_NET_NODES=%q: want a number of at least 40", s)
		}
		nodesN = n
	}
	nodes := startNetwork(t, nodesN, time.Now)
	self := nodes[0]
	addrs := self.Host().Addrs()
	batch := make([]store.ProviderRecord, 0, 1000)
	for i := range keys {
		batch = append(batch, store.ProviderRecord{Key: key(i), Provider: self.Self(), Addrs: addrs, Expires: time.Now().Add(time.Hour)})
		if len(batch) == cap(batch) {
			if err := self.st.AddProviders(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}

	r := jobs.NewReprovider(self.st, self.Node, jobs.WalkOptions{PageSize: 1000})
	start := time.Now()
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := r.Progress()
	t.Logf("reprovided %d keys in %v: %d lookups (%.4f%% of keys), %d records sent, region bits %d, %d send errors",
		p.Done, time.Since(start).Round(time.Millisecond), p.Lookups, 100*float64(p.Lookups)/float64(keys), p.Sent, p.RegionBits, p.Errors)
	if p.Done != keys {
		t.Fatalf("reprovided %d of %d", p.Done, keys)
	}
	if float64(p.Lookups) > 0.05*keys {
		t.Fatalf("%d lookups for %d keys: more than 5%%", p.Lookups, keys)
	}
	if p.Errors != 0 {
		t.Fatalf("%d errors, last: %s", p.Errors, p.LastError)
	}
	// The alternative, for the note: one lookup per key. Measure what a
	// lookup costs on this network (a figure to log, not to assert).
	const sample = 50
	lookStart := time.Now()
	for i := range sample {
		if _, err := self.GetClosestPeers(context.Background(), []byte(fmt.Sprint("lookup cost ", i))); err != nil {
			t.Fatal(err)
		}
	}
	perLookup := time.Since(lookStart) / sample
	t.Logf("one lookup costs %v here; one lookup per key would spend about %v on %d sequential lookups", perLookup, (perLookup * keys).Round(time.Second), keys)

	// ADD_PROVIDER has no answer: the last messages may still be in the
	// receivers' streams when RunCycle returns. Wait until every record is
	// stored: each key on its 20 closest peers, the provider excluded.
	want := int64(0)
	for i := range keys {
		for _, q := range jobs.Closest(record.KadKeyOf(key(i)), p2ids(nodes[1:]), 20) {
			_ = q
			want++
		}
	}
	waitFor(t, time.Minute, func() (bool, string) {
		var total int64
		for _, nd := range nodes[1:] {
			st, _ := nd.st.Stats(context.Background())
			total += st.ProviderRecords
		}
		return total == want, fmt.Sprintf("%d of %d records stored on the other nodes", total, want)
	})

	// For a sample of keys, every peer that GetClosestPeers (from another
	// node) names holds the record, as GET_PROVIDERS shows. A lookup leaves
	// out the node that runs it, so when the asker is itself among the key's
	// closest peers its answer names the next peer instead, which the
	// provider rightly did not send to; the asker holds the record then.
	asker := nodes[7]
	probe := nodes[13].Host()
	others := p2ids(nodes[1:])
	byID := make(map[peer.ID]liveNode, len(nodes))
	for _, nd := range nodes {
		byID[nd.Self()] = nd
	}
	checked := 0
	for i := 0; i < keys; i += 400 {
		kk := key(i)
		closest, err := asker.GetClosestPeers(context.Background(), kk)
		if err != nil {
			t.Fatal(err)
		}
		expected := jobs.Closest(record.KadKeyOf(kk), others, 20)
		extra := 0
		for _, q := range closest {
			switch {
			case q == self.Self():
				continue // the provider holds its own record
			case !slices.Contains(expected, q):
				extra++
				continue
			case q == probe.ID():
				got, err := nodes[13].st.Providers(context.Background(), kk, 0)
				if err != nil || len(got) != 1 {
					t.Fatalf("key %d: closest peer (the probe) lacks the record", i)
				}
				continue
			}
			// On a large network the probe need not know q's address.
			probe.Peerstore().AddAddrs(q, byID[q].Host().Addrs(), time.Hour)
			provs := getProviders(t, probe, q, "", kk)
			if n, ok := provs[self.Self()]; !ok || n == 0 {
				t.Fatalf("key %d: closest peer %s does not return the provider (with addresses): %v", i, q, provs)
			}
			checked++
		}
		if extra > 0 {
			if extra > 1 || !slices.Contains(expected, asker.Self()) {
				t.Fatalf("key %d: GetClosestPeers named %d peers outside the %d closest", i, extra, len(expected))
			}
			if got, _ := asker.st.Providers(context.Background(), kk, 0); len(got) != 1 {
				t.Fatalf("key %d: the asker is among the closest but lacks the record", i)
			}
		}
	}
	if checked < 500 {
		t.Fatalf("only %d (key, peer) pairs checked", checked)
	}
}

// Replication restores a value record onto a peer that joined after it was
// stored and is now among the record's closest peers.
func TestReplicationReachesNewPeer(t *testing.T) {
	nodes := startNetwork(t, 25, time.Now)
	holder := nodes[0]
	// A real /pk record: the receiving peers validate what they are sent.
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubBytes, err := crypto.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	rec := store.ValueRecord{Key: []byte("/pk/" + string(pid)), Value: pubBytes, Received: time.Now(), Expires: time.Now().Add(time.Hour)}
	if err := holder.st.PutValue(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	// A newcomer joins: a node whose peer ID is closer to the record than
	// every current node's.
	var ids []peer.ID
	for _, nd := range nodes {
		ids = append(ids, nd.Self())
	}
	target := record.KadKeyOf(rec.Key)
	var newcomer liveNode
	for attempt := 0; ; attempt++ {
		h := loopbackHost(t)
		if jobs.Closest(target, append(slices.Clone(ids), h.ID()), 1)[0] != h.ID() {
			h.Close()
			continue
		}
		st := memstore.New(store.Options{})
		t.Cleanup(func() { st.Close() })
		k, err := kad.New(h, st, kad.Mode(kad.ModeServer), kad.RefreshInterval(0), kad.Registerer(prometheus.NewRegistry()),
			kad.BootstrapPeers(peer.AddrInfo{ID: holder.Host().ID(), Addrs: holder.Host().Addrs()}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		if err := k.RefreshRoutingTable(context.Background()); err != nil {
			t.Fatal(err)
		}
		newcomer = liveNode{k, st}
		break
	}
	if _, err := newcomer.st.GetValue(context.Background(), rec.Key); err == nil {
		t.Fatal("the newcomer had the record before replication")
	}
	r := jobs.NewReplicator(holder.st, holder.Node, jobs.ReplicatorOptions{})
	if err := r.RunCycle(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := newcomer.st.GetValue(context.Background(), rec.Key)
	if err != nil || !bytes.Equal(got.Value, pubBytes) {
		t.Fatalf("replication did not reach the new closest peer: %v", err)
	}
}
