package kad

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
)

// Bootstrap connects to the configured bootstrap peers (those that answer
// join the routing table through identify) and starts a routing-table
// refresh without waiting for it. It implements routing.Routing; use
// RefreshRoutingTable to wait for the refresh.
func (n *Node) Bootstrap(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	n.connectBootstrap(ctx)
	select {
	case n.refreshC <- nil:
	default: // a refresh is already running
	}
	return nil
}

func (n *Node) connectBootstrap(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ai := range n.cfg.bootstrap {
		if ai.ID == n.self {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, n.cfg.peerTimeout)
			defer cancel()
			if err := n.host.Connect(ctx, ai); err != nil {
				n.log.Debug("bootstrap peer unreachable", "peer", ai.ID, "err", err)
				return
			}
			// Connect waits for identify only on a new connection: wait on
			// existing ones too, so the peer's protocols are known and it
			// enters the routing table before the refresh starts.
			if ids, ok := n.host.(interface{ IDService() identify.IDService }); ok {
				for _, c := range n.host.Network().ConnsToPeer(ai.ID) {
					select {
					case <-ids.IDService().IdentifyWait(c):
					case <-ctx.Done():
						return
					}
				}
			}
			n.peerChanged(ai.ID)
		})
	}
	wg.Wait()
}

// RefreshRoutingTable connects to the bootstrap peers, then refreshes the
// routing table and waits for the refresh: a lookup of the node's own ID (which
// fills the nearest buckets and tells the closest peers about this node), a
// lookup of a random ID in each bucket not refreshed within the refresh
// interval, and a liveness check of peers not heard from since then.
func (n *Node) RefreshRoutingTable(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	n.connectBootstrap(ctx)
	done := make(chan error, 1)
	select {
	case n.refreshC <- done:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.ctx.Done():
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refreshLoop runs refreshes on request and every refresh interval, one at a
// time.
func (n *Node) refreshLoop() {
	defer n.wg.Done()
	var tick <-chan time.Time
	if n.cfg.refreshInterval > 0 {
		t := time.NewTicker(n.cfg.refreshInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var done chan error
		select {
		case <-n.ctx.Done():
			return
		case <-tick:
		case done = <-n.refreshC:
		}
		err := n.refresh(n.ctx)
		if done != nil {
			done <- err
		}
	}
}

func (n *Node) refresh(ctx context.Context) error {
	if n.rt.Size() == 0 {
		return ErrNoPeers
	}
	_, err := n.GetClosestPeers(ctx, []byte(n.self))
	if err != nil && !errors.Is(err, ErrNoPeers) {
		return err
	}
	interval := n.cfg.refreshInterval
	if interval == 0 {
		interval = DefaultRefreshInterval
	}
	now := time.Now()
	for cpl, last := range n.rt.GetTrackedCplsForRefresh() {
		if now.Sub(last) < interval {
			continue
		}
		id, err := n.rt.GenRandPeerID(uint(cpl))
		if err != nil {
			continue
		}
		if _, err := n.GetClosestPeers(ctx, []byte(id)); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	n.checkLiveness(ctx, now.Add(-interval))
	return nil
}

// checkLiveness asks each routing-table peer not successfully queried since
// before for its closest peers, and removes those that do not answer.
func (n *Node) checkLiveness(ctx context.Context, before time.Time) {
	var stale []peer.ID
	for _, pi := range n.rt.GetPeerInfos() {
		if pi.LastSuccessfulOutboundQueryAt.Before(before) {
			stale = append(stale, pi.Id)
		}
	}
	sem := make(chan struct{}, n.cfg.alpha)
	var wg sync.WaitGroup
	for _, p := range stale {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := n.findNodeQuery([]byte(p))(ctx, p); err != nil {
				if ctx.Err() == nil {
					n.rt.RemovePeer(p)
				}
				return
			}
			n.rt.UpdateLastSuccessfulOutboundQueryAt(p, time.Now())
		})
	}
	wg.Wait()
}
