package kad_test

import (
	"crypto/rand"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// A kadstore node restarted on the same Pebble directory and identity still
// answers GET_PROVIDERS with the providers' addresses, which were persisted
// with the records. A go-libp2p-kad-dht node restarted on the same datastore
// keeps the records but not the addresses (they lived in its peerstore).
func TestRestartKeepsProviderAddresses(t *testing.T) {
	dir := t.TempDir()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	start := func() *kadNode {
		st, err := pebblestore.Open(dir, pebblestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		n := newKadNodeOn(t, newHost(t, libp2p.Identity(sk)), st)
		t.Cleanup(func() { st.Close() })
		return n
	}
	goStore := dssync.MutexWrap(ds.NewMapDatastore())
	goSK, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	startGo := func() *dht.IpfsDHT {
		h := newHost(t, libp2p.Identity(goSK))
		d, err := dht.New(h, dht.Mode(dht.ModeServer), dht.DisableAutoRefresh(), dht.Datastore(goStore))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}

	k := start()
	g := startGo()
	provider := newGoNode(t)
	querier := newGoNode(t)
	connect(t, provider.Host(), k.h)
	connect(t, provider.Host(), g.Host())
	p2ptest.WaitUntil(t, 30*time.Second, "the provider's routing table", func() bool {
		return len(provider.RoutingTable().ListPeers()) == 2
	})
	ctx := ctxTimeout(t, 60*time.Second)
	c := testCID(t, "survives restarts")
	if err := provider.Provide(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "both nodes to store the record", func() bool {
		recs, err := k.st.Providers(ctx, c.Hash(), 0)
		gp, gerr := g.ProviderStore().GetProviders(ctx, c.Hash())
		return err == nil && len(recs) == 1 && gerr == nil && len(gp) == 1
	})
	want := provider.Host().Addrs()
	id := k.h.ID()

	// Restart both on their stores, with the same identities, on new hosts.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k.h.Close()
	if err := k.st.Close(); err != nil {
		t.Fatal(err)
	}
	g.Close()
	g.Host().Close()
	k = start()
	g = startGo()
	if k.h.ID() != id {
		t.Fatal("the restarted node has another identity")
	}
	connect(t, querier.Host(), k.h)
	connect(t, querier.Host(), g.Host())
	msgr, err := dhtpb.NewProtocolMessenger(querier.MessageSender())
	if err != nil {
		t.Fatal(err)
	}
	provs, _, err := msgr.GetProviders(ctx, k.h.ID(), c.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if len(provs) != 1 || provs[0].ID != provider.Host().ID() || !sameAddrs(provs[0].Addrs, want) {
		t.Fatalf("restarted kadstore node answered %v, want %s at %v", provs, provider.Host().ID(), want)
	}
	gprovs, _, err := msgr.GetProviders(ctx, g.Host().ID(), c.Hash())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range gprovs {
		t.Logf("restarted go-libp2p-kad-dht node answered provider %s with %d addresses", p.ID, len(p.Addrs))
	}
}

func sameAddrs(a, b []ma.Multiaddr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x.Equal(y) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
