package daemon

import (
	"context"
	"errors"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/kad"
)

// nodeAdapter presents a kad.Node as the API's Node.
type nodeAdapter struct{ n *kad.Node }

var _ api.Node = nodeAdapter{}

func (a nodeAdapter) ID() peer.ID           { return a.n.Self() }
func (a nodeAdapter) Addrs() []ma.Multiaddr { return a.n.Host().Addrs() }
func (a nodeAdapter) RoutingTableSize() int { return a.n.RoutingTable().Size() }
func (a nodeAdapter) Mode() (string, bool)  { return a.n.Mode().String(), a.n.Serving() }
func (a nodeAdapter) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	return a.n.FindPeer(ctx, id)
}
func (a nodeAdapter) GetValue(ctx context.Context, key string) ([]byte, error) {
	return a.n.GetValue(ctx, key)
}

// PutValue stores and publishes a value record. With no peers reachable the
// record is still stored as the node's own, and the republish job sends it
// out later, so that is success here.
func (a nodeAdapter) PutValue(ctx context.Context, key string, value []byte) error {
	if err := a.n.PutValue(ctx, key, value); err != nil && !errors.Is(err, kad.ErrNoPeers) {
		return err
	}
	return nil
}
func (a nodeAdapter) GetClosestPeers(ctx context.Context, key []byte) ([]peer.ID, error) {
	return a.n.GetClosestPeers(ctx, key)
}

// Provide stores the record locally, then announces it to the closest peers
// and counts those that took it. With no peers the record is still stored,
// and the reprovide job announces it later: that is 0 peers, not an error.
func (a nodeAdapter) Provide(ctx context.Context, key []byte) (int, error) {
	if err := a.n.ProvideKey(ctx, key, false); err != nil {
		return 0, err
	}
	reached, err := a.n.Announce(ctx, key)
	if errors.Is(err, kad.ErrNoPeers) {
		return 0, nil
	}
	return reached, err
}

func (a nodeAdapter) FindProviders(ctx context.Context, key []byte, count int) <-chan peer.AddrInfo {
	return a.n.FindProvidersAsync(ctx, cid.NewCidV1(cid.Raw, key), count)
}
