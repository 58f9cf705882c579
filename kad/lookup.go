package kad

import (
	"bytes"
	"context"
	"slices"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// queryFunc sends one lookup request to p and returns the closer peers it
// answered with.
type queryFunc func(ctx context.Context, p peer.ID) ([]peer.AddrInfo, error)

type candState uint8

const (
	heard     candState = iota // known, not asked yet
	waiting                    // request in flight
	succeeded                  // answered
	failed                     // could not be reached, or answered badly
)

type candidate struct {
	id    peer.ID
	dist  kb.ID
	state candState
}

// lookup runs an iterative Kademlia lookup toward target: it asks the closest
// peers it knows, alpha at a time, for closer ones, and ends when the k
// closest peers it has heard of (leaving out those that failed) have all
// answered, when no peer is left to ask, when stop returns true, or when ctx
// ends. It returns the closest peers that answered, nearest first, at most k.
//
// Peers that answer are added to the routing table (they speak the protocol);
// peers that fail while ctx is live are removed from it.
func (n *Node) lookup(ctx context.Context, target kb.ID, query queryFunc, stop func() bool) ([]peer.ID, error) {
	return n.lookupAll(ctx, target, query, stop, nil)
}

// lookupAll is lookup that also sets *all, if all is not nil, to every peer
// heard of that did not fail, nearest first.
func (n *Node) lookupAll(ctx context.Context, target kb.ID, query queryFunc, stop func() bool, all *[]peer.ID) ([]peer.ID, error) {
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	seeds := n.rt.NearestPeers(target, n.cfg.bucketSize)
	if len(seeds) == 0 {
		return nil, ErrNoPeers
	}
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnClose := context.AfterFunc(n.ctx, cancel)
	defer stopOnClose()

	k, alpha := n.cfg.bucketSize, n.cfg.alpha
	var cands []*candidate
	known := make(map[peer.ID]bool)
	add := func(id peer.ID) {
		if id == n.self || known[id] {
			return
		}
		known[id] = true
		c := &candidate{id: id, dist: kb.Xor(target, kb.ConvertPeerID(id))}
		i, _ := slices.BinarySearchFunc(cands, c, func(a, b *candidate) int { return bytes.Compare(a.dist, b.dist) })
		cands = slices.Insert(cands, i, c)
	}
	for _, p := range seeds {
		add(p)
	}

	type result struct {
		c      *candidate
		closer []peer.AddrInfo
		err    error
	}
	results := make(chan result)
	inflight := 0
	for qctx.Err() == nil && (stop == nil || !stop()) {
		pending, seen := false, 0
		for _, c := range cands {
			if seen == k {
				break
			}
			if c.state == failed {
				continue
			}
			seen++
			switch c.state {
			case heard:
				pending = true
				if inflight < alpha {
					c.state = waiting
					inflight++
					go func() {
						closer, err := query(qctx, c.id)
						results <- result{c, closer, err}
					}()
				}
			case waiting:
				pending = true
			}
		}
		if !pending || inflight == 0 {
			break
		}
		r := <-results
		inflight--
		n.applyResult(qctx, r.c, r.closer, r.err, add)
	}
	cancel()
	for ; inflight > 0; inflight-- {
		r := <-results
		n.applyResult(qctx, r.c, r.closer, r.err, add)
	}

	if all != nil {
		for _, c := range cands {
			if c.state != failed {
				*all = append(*all, c.id)
			}
		}
	}
	out := make([]peer.ID, 0, k)
	for _, c := range cands {
		if c.state == succeeded {
			out = append(out, c.id)
			if len(out) == k {
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	if n.ctx.Err() != nil {
		return out, ErrClosed
	}
	n.rt.ResetCplRefreshedAtForID(target, time.Now())
	return out, nil
}

// maxCloserPerResponse caps the closer peers taken from one response: an
// honest peer sends k.
func (n *Node) maxCloserPerResponse() int { return 2 * n.cfg.bucketSize }

func (n *Node) applyResult(ctx context.Context, c *candidate, closer []peer.AddrInfo, err error, add func(peer.ID)) {
	if err != nil {
		c.state = failed
		n.log.Debug("lookup request failed", "peer", c.id, "err", err)
		if ctx.Err() == nil {
			n.rt.RemovePeer(c.id)
		}
		return
	}
	c.state = succeeded
	n.addToTable(c.id)
	if len(closer) > n.maxCloserPerResponse() {
		closer = closer[:n.maxCloserPerResponse()]
	}
	for _, ai := range closer {
		if ai.ID == n.self || ai.ID == "" {
			continue
		}
		if len(ai.Addrs) > 0 {
			n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		}
		add(ai.ID)
	}
}
