package kad_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	kbucket "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
)

// testNet is a DHT of go-libp2p-kad-dht server nodes and kadstore server
// nodes on loopback.
type testNet struct {
	gos  []*dht.IpfsDHT
	kads []*kadNode
}

func (tn *testNet) hosts() []host.Host {
	var hs []host.Host
	for _, d := range tn.gos {
		hs = append(hs, d.Host())
	}
	for _, k := range tn.kads {
		hs = append(hs, k.h)
	}
	return hs
}

// buildNet starts nGo go-libp2p-kad-dht nodes and nKad kadstore nodes, joins
// them through the first node and refreshes every routing table, so that
// lookups find the true closest peers.
func buildNet(t *testing.T, nGo, nKad int, kopts ...kad.Option) *testNet {
	t.Helper()
	tn := &testNet{}
	start := time.Now()
	defer func() { t.Logf("network of %d nodes built in %v", nGo+nKad, time.Since(start)) }()
	for range nGo {
		tn.gos = append(tn.gos, newGoNode(t))
	}
	for range nKad {
		tn.kads = append(tn.kads, newKadNode(t, nil, kopts...))
	}
	hs := tn.hosts()
	rng := rand.New(rand.NewPCG(1, 2))
	for i, h := range hs[1:] {
		connect(t, h, hs[0])
		if i > 0 {
			connect(t, h, hs[1+rng.IntN(i)])
		}
	}
	// Identify puts every node in the first node's table; then each node
	// looks itself up through it and meets its neighbours.
	holdable := tableCapacity(hs[0].ID(), tn.hosts(), 20)
	p2ptest.WaitUntil(t, 60*time.Second, "nodes to join the first node's table", func() bool {
		return len(tn.tablePeers(0)) >= holdable
	})
	ctx := ctxTimeout(t, 120*time.Second)
	// A few at a time: hundreds of simultaneous handshakes on two cores
	// under the race detector can outlast dial timeouts.
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	run := func(f func()) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f()
		})
	}
	for _, d := range tn.gos {
		run(func() { <-d.RefreshRoutingTable() })
	}
	// A lookup of its own ID is the part of a refresh that matters here: in
	// networks this small every node fits in every table. A second lookup
	// repairs a table that lost a peer to a failed request.
	for round := range 2 {
		for _, k := range tn.kads {
			if round > 0 && len(k.RoutingPeers()) == len(hs)-1 {
				continue
			}
			run(func() {
				if _, err := k.GetClosestPeers(ctx, []byte(k.h.ID())); err != nil {
					t.Errorf("self lookup: %v", err)
				}
			})
		}
		wg.Wait()
	}
	return tn
}

// tableCapacity returns how many of hosts a routing table of self with
// buckets of size k can hold: at most k for each common-prefix length.
// With 30 random peers, more than 20 share no prefix bit with self about
// once in a hundred networks, and the table cannot hold them all.
func tableCapacity(self peer.ID, hosts []host.Host, k int) int {
	perCPL := map[int]int{}
	for _, h := range hosts {
		if h.ID() != self {
			perCPL[kbucket.CommonPrefixLen(kbucket.ConvertPeerID(self), kbucket.ConvertPeerID(h.ID()))]++
		}
	}
	n := 0
	for _, c := range perCPL {
		n += min(c, k)
	}
	return n
}

// tablePeers returns the routing-table peers of node i (go nodes first).
func (tn *testNet) tablePeers(i int) []peer.ID {
	if i < len(tn.gos) {
		return tn.gos[i].RoutingTable().ListPeers()
	}
	return tn.kads[i-len(tn.gos)].RoutingPeers()
}

// closestTruth returns the k server nodes closest to key, leaving out self.
func (tn *testNet) closestTruth(key []byte, self peer.ID, k int) []peer.ID {
	target := sha256.Sum256(key)
	var ids []peer.ID
	for _, h := range tn.hosts() {
		if h.ID() != self {
			ids = append(ids, h.ID())
		}
	}
	dist := func(p peer.ID) []byte {
		d := sha256.Sum256([]byte(p))
		for i := range d {
			d[i] ^= target[i]
		}
		return d[:]
	}
	slices.SortFunc(ids, func(a, b peer.ID) int { return bytes.Compare(dist(a), dist(b)) })
	return ids[:min(k, len(ids))]
}

func sameSet(a, b []peer.ID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

var _ = context.Background
