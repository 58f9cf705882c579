package kad_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
)

// TestKadNetwork runs the end-to-end checks on a network of kadstore nodes
// only.
func TestKadNetwork(t *testing.T) {
	tn := buildNet(t, 0, 30)
	ks := tn.kads

	t.Run("GetClosestPeers", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		key := []byte("closest-peers-key")
		for _, k := range []*kadNode{ks[0], ks[17]} {
			got, err := k.GetClosestPeers(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			want := tn.closestTruth(key, k.h.ID(), 20)
			if !slices.Equal(got, want) {
				var missing, extra []peer.ID
				for _, p := range want {
					if !slices.Contains(got, p) {
						missing = append(missing, p)
					}
				}
				for _, p := range got {
					if !slices.Contains(want, p) {
						extra = append(extra, p)
					}
				}
				t.Fatalf("from %s: got %d peers, want the 20 closest in order; missing %v, extra %v, same set %v, table %d", k.h.ID(), len(got), missing, extra, sameSet(got, want), len(k.RoutingPeers()))
			}
		}
	})

	t.Run("ProvideFindProviders", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		c := testCID(t, "three providers")
		providers := []peer.ID{ks[1].h.ID(), ks[2].h.ID(), ks[3].h.ID()}
		for _, k := range ks[1:4] {
			if err := k.Provide(ctx, c, true); err != nil {
				t.Fatal(err)
			}
		}
		closest := tn.closestTruth(c.Hash(), "", 20)
		p2ptest.WaitUntil(t, 30*time.Second, "the closest nodes to store all three records", func() bool {
			for _, k := range ks {
				if !slices.Contains(closest, k.h.ID()) {
					continue
				}
				if recs, err := k.st.Providers(ctx, c.Hash(), 0); err != nil || len(recs) < 3 {
					return false
				}
			}
			return true
		})
		var all []peer.ID
		for ai, err := range ks[20].FindProviders(ctx, c, 0) {
			if err != nil {
				t.Fatal(err)
			}
			if len(ai.Addrs) == 0 {
				t.Errorf("provider %s without addresses", ai.ID)
			}
			all = append(all, ai.ID)
		}
		if !sameSet(all, providers) {
			t.Fatalf("found %v, want %v", all, providers)
		}
		n := 0
		for _, err := range ks[21].FindProviders(ctx, c, 2) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 2 {
			t.Fatalf("FindProviders with count 2 yielded %d", n)
		}
		// Breaking out of the loop ends the search.
		for range ks[22].FindProviders(ctx, c, 0) {
			break
		}
	})

	t.Run("Values", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		key, val := pkRecord(t)
		if err := ks[4].PutValue(ctx, key, val); err != nil {
			t.Fatal(err)
		}
		got, err := ks[25].GetValue(ctx, key, kad.Quorum(3))
		if err != nil || string(got) != string(val) {
			t.Fatalf("GetValue(/pk): %v", err)
		}
		if _, err := ks[25].GetValue(ctx, "/pk/missing"); !errors.Is(err, kad.ErrNotFound) {
			t.Fatalf("GetValue of a missing key: %v", err)
		}
		if err := ks[4].PutValue(ctx, "/unknown/x", []byte("v")); !errors.Is(err, kad.ErrInvalidRecord) {
			t.Fatalf("PutValue in an unknown namespace: %v", err)
		}
	})

	t.Run("IPNSCorrection", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		sk, key := ipnsKey(t)
		v1, v2 := ipnsRecord(t, sk, 1), ipnsRecord(t, sk, 2)
		if err := ks[5].PutValue(ctx, key, v1); err != nil {
			t.Fatal(err)
		}
		// Only one of the closest peers learns of v2.
		closest := tn.closestTruth([]byte(key), "", 20)
		var holders []*kadNode
		for _, k := range ks {
			if slices.Contains(closest, k.h.ID()) && k != ks[5] && k != ks[6] {
				holders = append(holders, k)
			}
		}
		if err := ks[6].SendPutValue(ctx, holders[0].h.ID(), []byte(key), v2); err != nil {
			t.Fatal(err)
		}
		got, err := ks[6].GetValue(ctx, key)
		if err != nil || string(got) != string(v2) {
			t.Fatalf("GetValue: %v", err)
		}
		// GetValue corrected the closest peers that held v1.
		for _, k := range holders {
			rec, err := k.st.GetValue(ctx, []byte(key))
			if err != nil || string(rec.Value) != string(v2) {
				t.Errorf("closest peer %s still holds the old record (%v)", k.h.ID(), err)
			}
		}
		bad := corruptSignature(t, v2)
		if err := ks[7].SendPutValue(ctx, ks[8].h.ID(), []byte(key), bad); err == nil {
			t.Fatal("a kadstore node accepted a record with a bad signature")
		}
	})

	t.Run("FindPeer", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		target := ks[29]
		ai, err := ks[9].FindPeer(ctx, target.h.ID())
		if err != nil || ai.ID != target.h.ID() || len(ai.Addrs) == 0 {
			t.Fatalf("FindPeer: %v, %v", ai, err)
		}
	})
}
