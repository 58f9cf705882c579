package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/routing/http/server"
	"github.com/ipfs/boxo/routing/http/types"
	"github.com/ipfs/boxo/routing/http/types/iter"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/kadstore/kadstore/store"
)

func newRoutingHandler(r *router, cfg Config) http.Handler {
	opts := []server.Option{server.WithRoutingTimeout(cfg.RoutingTimeout)}
	if cfg.Registerer != nil {
		opts = append(opts, server.WithPrometheusRegistry(cfg.Registerer))
	}
	return server.Handler(r, opts...)
}

// router answers the Delegated Routing V1 API from the store, then the DHT.
type router struct{ api *api }

var _ server.DelegatedRouter = (*router)(nil)

func peerRecord(ai peer.AddrInfo) *types.PeerRecord {
	id := ai.ID
	rec := &types.PeerRecord{Schema: types.SchemaPeer, ID: &id, Addrs: []types.Multiaddr{}}
	for _, a := range ai.Addrs {
		rec.Addrs = append(rec.Addrs, types.Multiaddr{Multiaddr: a})
	}
	return rec
}

// FindProviders yields the providers the store holds, then streams those the
// DHT finds, each provider once.
func (r *router) FindProviders(ctx context.Context, c cid.Cid, limit int) (iter.ResultIter[types.Record], error) {
	key := c.Hash()
	local, err := r.api.cfg.Store.Providers(ctx, key, 0)
	if err != nil {
		r.api.cfg.Logger.Warn("delegated routing: store lookup failed", "cid", c, "err", err)
	}
	count := limit
	if count <= 0 {
		count = 100
	}
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan iter.Result[types.Record], 16)
	go func() {
		defer close(out)
		seen := make(map[peer.ID]bool)
		send := func(ai peer.AddrInfo) bool {
			if seen[ai.ID] {
				return true
			}
			seen[ai.ID] = true
			select {
			case out <- iter.Result[types.Record]{Val: peerRecord(ai)}:
				return len(seen) < count
			case <-ctx.Done():
				return false
			}
		}
		self := r.api.cfg.Node.ID()
		for _, p := range local {
			addrs := p.Addrs
			if p.Provider == self {
				// The node's own records are served with its current
				// addresses, not those stored when they were provided.
				addrs = r.api.cfg.Node.Addrs()
			}
			if !send(peer.AddrInfo{ID: p.Provider, Addrs: addrs}) {
				return
			}
		}
		for ai := range r.api.cfg.Node.FindProviders(ctx, key, count) {
			if !send(ai) {
				return
			}
		}
	}()
	return &chanIter[types.Record]{ch: out, cancel: cancel}, nil
}

func (r *router) FindPeers(ctx context.Context, pid peer.ID, limit int) (iter.ResultIter[*types.PeerRecord], error) {
	ai, err := r.api.cfg.Node.FindPeer(ctx, pid)
	if err != nil {
		if errors.Is(err, routing.ErrNotFound) || errors.Is(err, context.DeadlineExceeded) {
			return nil, routing.ErrNotFound
		}
		return nil, err
	}
	return iter.ToResultIter(iter.FromSlice([]*types.PeerRecord{peerRecord(ai)})), nil
}

// GetIPNS answers from the store when it holds a valid record for the name,
// and otherwise asks the DHT.
func (r *router) GetIPNS(ctx context.Context, name ipns.Name) (*ipns.Record, error) {
	key := name.RoutingKey()
	if v, err := r.api.cfg.Store.GetValue(ctx, key); err == nil {
		if rec, err := ipns.UnmarshalRecord(v.Value); err == nil && ipns.ValidateWithName(rec, name) == nil {
			return rec, nil
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		r.api.cfg.Logger.Warn("delegated routing: store lookup failed", "name", name, "err", err)
	}
	b, err := r.api.cfg.Node.GetValue(ctx, string(key))
	if err != nil {
		if errors.Is(err, routing.ErrNotFound) {
			return nil, routing.ErrNotFound
		}
		return nil, err
	}
	rec, err := ipns.UnmarshalRecord(b)
	if err != nil {
		return nil, fmt.Errorf("DHT returned an invalid IPNS record: %w", err)
	}
	return rec, nil
}

func (r *router) PutIPNS(ctx context.Context, name ipns.Name, rec *ipns.Record) error {
	b, err := ipns.MarshalRecord(rec)
	if err != nil {
		return err
	}
	if err := r.api.cfg.Node.PutValue(ctx, string(name.RoutingKey()), b); err != nil {
		// boxo answers 500; a full disk is 507 and unavailable storage 503.
		return hintStatus(ctx, err)
	}
	return nil
}

func (r *router) GetClosestPeers(ctx context.Context, key cid.Cid) (iter.ResultIter[*types.PeerRecord], error) {
	ids, err := r.api.cfg.Node.GetClosestPeers(ctx, key.Bytes())
	if err != nil {
		return nil, err
	}
	recs := make([]*types.PeerRecord, len(ids))
	for i, id := range ids {
		recs[i] = peerRecord(peer.AddrInfo{ID: id})
	}
	return iter.ToResultIter(iter.FromSlice(recs)), nil
}

// ProvideBitswap is the historic write API; kadstore does not accept it
// (provide through POST /v1/provide instead).
func (r *router) ProvideBitswap(context.Context, *server.BitswapWriteProvideRequest) (time.Duration, error) {
	return 0, routing.ErrNotSupported
}

// chanIter adapts a channel to boxo's ResultIter; Close stops the producer.
type chanIter[T any] struct {
	ch     <-chan iter.Result[T]
	cur    iter.Result[T]
	cancel context.CancelFunc
}

func (c *chanIter[T]) Next() bool {
	v, ok := <-c.ch
	c.cur = v
	return ok
}

func (c *chanIter[T]) Val() iter.Result[T] { return c.cur }

func (c *chanIter[T]) Close() error {
	c.cancel()
	for range c.ch { // let the producer finish
	}
	return nil
}
