package kad

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
)

// Bootstrap connects to the configured bootstrap peers (those that answer
// join the routing table through identify) and starts a routing-table
// refresh without waiting for it. It implements routing.Routing; use
// RefreshRoutingTable to wait for the refresh.
//
// When bootstrap peers are configured and none of them could be reached (or
// none speaks the protocol), Bootstrap returns an error matching ErrBootstrap
// that names the peers tried. Either way, the first call starts a background
// task that bootstraps again, with exponential backoff (BootstrapBackoff),
// until the routing table has peers, and again whenever it becomes empty;
// each failed attempt is logged at warn level with the peers tried, and
// attempts are counted in kadstore_kad_bootstrap_attempts_total{outcome}.
func (n *Node) Bootstrap(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	err := n.bootstrapOnce(ctx)
	n.keeperOnce.Do(func() {
		if len(n.cfg.bootstrap) == 0 {
			return
		}
		// As trackInbound: no wg.Add once Close may be waiting.
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.closed {
			return
		}
		n.wg.Add(1)
		go n.bootstrapKeeper(err == nil)
	})
	return err
}

// bootstrapOnce makes one bootstrap attempt: connect to the bootstrap peers
// and, if the routing table then has peers, start a refresh. It logs and
// counts a failure.
func (n *Node) bootstrapOnce(ctx context.Context) error {
	errs := n.connectBootstrap(ctx)
	select {
	case n.refreshC <- nil:
	default: // a refresh is already running
	}
	if len(n.cfg.bootstrap) == 0 {
		return nil
	}
	if n.rt.Size() > 0 {
		n.metrics.bootstrap.WithLabelValues("ok").Inc()
		return nil
	}
	if ctx.Err() != nil || n.ctx.Err() != nil {
		return ctx.Err()
	}
	n.metrics.bootstrap.WithLabelValues("failed").Inc()
	tried := make([]string, 0, len(n.cfg.bootstrap))
	for _, ai := range n.cfg.bootstrap {
		tried = append(tried, ai.String())
	}
	err := fmt.Errorf("%w: routing table empty after trying %d peers: %w", ErrBootstrap, len(tried), errors.Join(errs...))
	n.log.Warn("bootstrap failed: no bootstrap peer reachable; retrying with backoff", "tried", tried, "err", errors.Join(errs...))
	return err
}

// bootstrapKeeper bootstraps again while the routing table is empty: with
// exponential backoff from the minimum to the maximum of BootstrapBackoff
// after failures, and within the minimum once the table empties.
func (n *Node) bootstrapKeeper(ok bool) {
	defer n.wg.Done()
	delay := n.cfg.bootstrapMin
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.rt.Size() > 0 {
			ok = true
			delay = n.cfg.bootstrapMin
			t.Reset(delay)
			continue
		}
		if ok {
			n.log.Warn("routing table empty; bootstrapping again")
			ok = false
		}
		if n.bootstrapOnce(n.ctx) == nil {
			ok = true
			delay = n.cfg.bootstrapMin
		} else {
			delay = min(2*delay, n.cfg.bootstrapMax)
		}
		t.Reset(delay)
	}
}

// connectBootstrap connects to every bootstrap peer at once and adds those
// that speak the protocol to the routing table. It returns the errors of the
// peers that could not be reached.
func (n *Node) connectBootstrap(ctx context.Context) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, ai := range n.cfg.bootstrap {
		if ai.ID == n.self {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, n.cfg.peerTimeout)
			defer cancel()
			if n.host.Network().Connectedness(ai.ID) != network.Connected {
				// The swarm backs off from a peer that failed to dial, up to
				// 5 min; the node's own backoff spaces these attempts.
				ctx = network.WithForceDirectDial(ctx, "kad bootstrap")
			}
			if err := n.host.Connect(ctx, ai); err != nil {
				n.log.Debug("bootstrap peer unreachable", "peer", ai.ID, "err", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", ai.ID, err))
				mu.Unlock()
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
	return errs
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
