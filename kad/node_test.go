package kad_test

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/internal/p2ptest"
)

func testCID(t testing.TB, s string) cid.Cid {
	t.Helper()
	mh, err := multihash.Sum([]byte(s), multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, mh)
}

func TestTwoNodesProvideFind(t *testing.T) {
	a := newKadNode(t, nil)
	b := newKadNode(t, nil)
	connect(t, a.h, b.h)
	p2ptest.WaitUntil(t, 30*time.Second, "routing tables", func() bool {
		return inTable(a.RoutingPeers(), b.h.ID()) && inTable(b.RoutingPeers(), a.h.ID())
	})
	ctx := ctxTimeout(t, 20*time.Second)
	c := testCID(t, "hello")
	if err := a.Provide(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	// ADD_PROVIDER has no answer: b stores the record after Provide returns.
	p2ptest.WaitUntil(t, 30*time.Second, "b to store the record", func() bool {
		recs, err := b.st.Providers(ctx, c.Hash(), 0)
		return err == nil && len(recs) == 1 && recs[0].Provider == a.h.ID() && len(recs[0].Addrs) > 0
	})
	var found int
	for ai, err := range b.FindProviders(ctx, c, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if ai.ID != a.h.ID() || len(ai.Addrs) == 0 {
			t.Fatalf("found %v", ai)
		}
		found++
	}
	if found != 1 {
		t.Fatalf("found %d providers", found)
	}
}
