package pgstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/internal/kadtest"
	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/pgstore"
)

// dhtNode is a kad.Node on its own loopback host, with its store and the
// registry of its metrics.
type dhtNode struct{ *kadtest.Node }

// newDHTNode starts a kad node on a new loopback TCP host with store st; the
// node and the host are closed when the test ends, before st.
func newDHTNode(t *testing.T, st store.Store, mode kad.ModeOpt) *dhtNode {
	t.Helper()
	return &dhtNode{kadtest.New(t, st, kad.Mode(mode))}
}

// received returns how many requests of type typ (a protocol message name)
// the node handled with outcome ("" for any outcome).
func (n *dhtNode) received(t *testing.T, typ, outcome string) int {
	t.Helper()
	labels := map[string]string{"type": typ}
	if outcome != "" {
		labels["outcome"] = outcome
	}
	return int(kadtest.Metric(t, n.Registry, "kadstore_kad_messages_received_total", labels))
}

func contentKey(t *testing.T, s string) []byte {
	t.Helper()
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func addrStrings(as []ma.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	slices.Sort(out)
	return out
}

// TestSharedDatabaseDHT: three DHT nodes (A, B, C: different peer IDs) each
// on its own Store opened on one schema, not connected to each other. A
// provider announces itself to A over the wire (ADD_PROVIDER); a client
// connected to B alone asks B (GET_PROVIDERS) and gets that provider with its
// addresses, though B never received the announcement, and C's own record of
// the same key with C's addresses. Each node's provider-filtered scan finds
// exactly the records it provided itself.
func TestSharedDatabaseDHT(t *testing.T) {
	dsn := testDSN(t)
	schema := uniqueSchema(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	var servers [3]*dhtNode // A, B, C
	for i := range servers {
		servers[i] = newDHTNode(t, openSchema(t, dsn, schema, pgstore.Options{MaxConns: 2}), kad.ModeServer)
	}
	a, b, c := servers[0], servers[1], servers[2]
	mem := func() store.Store {
		st := memstore.New(store.Options{})
		t.Cleanup(func() { st.Close() })
		return st
	}
	prov := newDHTNode(t, mem(), kad.ModeClient)   // announces itself to A only
	client := newDHTNode(t, mem(), kad.ModeClient) // talks to B only

	shared := contentKey(t, "shared: announced to A by the provider, provided by C")
	own := map[peer.ID][][]byte{ // what each server provides itself
		a.Self(): {contentKey(t, "a0")},
		b.Self(): {contentKey(t, "b0"), contentKey(t, "b1")},
		c.Self(): {contentKey(t, "c0"), contentKey(t, "c1"), shared},
	}
	for _, n := range servers {
		for _, k := range own[n.Self()] {
			// No broadcast: the nodes know no peers; the record goes to the
			// shared database only.
			if err := n.ProvideKey(ctx, k, false); err != nil {
				t.Fatalf("ProvideKey by %s: %v", n.Self(), err)
			}
		}
	}

	// The provider announces itself to A. ADD_PROVIDER is not answered, so
	// wait until A has handled it.
	if err := prov.Host.Connect(ctx, peer.AddrInfo{ID: a.Self(), Addrs: a.Host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := prov.SendAddProviders(ctx, a.Self(), shared); err != nil {
		t.Fatalf("SendAddProviders to A: %v", err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "A to handle the ADD_PROVIDER", func() bool {
		return a.received(t, "ADD_PROVIDER", "") > 0
	})
	if got := a.received(t, "ADD_PROVIDER", "ok"); got != 1 {
		t.Fatalf("A stored %d ADD_PROVIDER, want 1", got)
	}

	// The client asks B, the only peer it knows.
	if err := client.Host.Connect(ctx, peer.AddrInfo{ID: b.Self(), Addrs: b.Host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "B in the client's routing table", func() bool {
		return slices.Contains(client.RoutingPeers(), b.Self())
	})
	got := map[peer.ID][]string{}
	for ai, err := range client.FindProviders(ctx, cid.NewCidV1(cid.Raw, shared), 0) {
		if err != nil {
			t.Fatalf("FindProviders: %v", err)
		}
		if _, dup := got[ai.ID]; dup {
			t.Errorf("provider %s found twice", ai.ID)
		}
		got[ai.ID] = addrStrings(ai.Addrs)
	}
	want := map[peer.ID][]string{
		prov.Self(): addrStrings(prov.Host.Addrs()), // received by A, stored with its addresses
		c.Self():    addrStrings(c.Host.Addrs()),    // C's own record
	}
	if len(got) != len(want) {
		t.Errorf("client found %d providers %v, want %v", len(got), got, want)
	}
	for id, addrs := range want {
		if !slices.Equal(got[id], addrs) {
			t.Errorf("provider %s: addresses %v, want %v", id, got[id], addrs)
		}
	}
	// Only B answered, and it never received the announcement; A and C were
	// never asked.
	// B counts a request once it has answered it, so the client can have
	// the answer before B's count moves: wait for it.
	p2ptest.WaitUntil(t, 30*time.Second, "B to count its GET_PROVIDERS answer", func() bool {
		return b.received(t, "GET_PROVIDERS", "ok") == 1
	})
	if n := b.received(t, "ADD_PROVIDER", ""); n != 0 {
		t.Errorf("B received %d ADD_PROVIDER, want 0", n)
	}
	for _, n := range []*dhtNode{a, c} {
		if k := n.received(t, "GET_PROVIDERS", ""); k != 0 {
			t.Errorf("%s received %d GET_PROVIDERS, want 0", n.Self(), k)
		}
	}

	// Each server's scan filtered by its own peer ID finds exactly its own
	// records: not the other servers', nor the provider's record that A
	// received, nor the other provider of the shared key.
	for _, n := range servers {
		var keys [][]byte
		for r, err := range store.ScanProviders(ctx, n.Store, store.ScanOptions{Peer: n.Self(), Limit: 2}) {
			if err != nil {
				t.Fatalf("scan of %s's records: %v", n.Self(), err)
			}
			if r.Provider != n.Self() {
				t.Errorf("scan of %s's records returned a record of %s", n.Self(), r.Provider)
			}
			if !slices.Equal(addrStrings(r.Addrs), addrStrings(n.Host.Addrs())) {
				t.Errorf("%s's record of %x: addresses %v, want %v", n.Self(), r.Key, r.Addrs, n.Host.Addrs())
			}
			keys = append(keys, r.Key)
		}
		wantKeys := slices.Clone(own[n.Self()])
		slices.SortFunc(wantKeys, func(x, y []byte) int {
			kx, ky := store.ProviderRecord{Key: x}.KadKey(), store.ProviderRecord{Key: y}.KadKey()
			return slices.Compare(kx[:], ky[:])
		})
		if !slices.EqualFunc(keys, wantKeys, slices.Equal) {
			t.Errorf("scan of %s's records: keys %x, want %x (in keyspace order)", n.Self(), keys, wantKeys)
		}
	}
	// The database holds the servers' records and the provider's, once each.
	st, err := c.Store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1 + 2 + 3 + 1); st.ProviderRecords != want {
		t.Errorf("Stats: %d provider records, want %d", st.ProviderRecords, want)
	}
}
