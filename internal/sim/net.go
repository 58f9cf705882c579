package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
)

// ErrOffline is returned (wrapped) when a node dials a peer that has left the
// simulated network.
var ErrOffline = errors.New("sim: peer offline")

// fabric is the simulated network: a mocknet whose links are made on the
// first dial between two live peers instead of up front. mocknet only
// connects peers joined by a link, and linking all pairs (LinkAll) costs
// N² links: 25 M for 5 000 nodes. A node reaches only the few hundred peers
// its lookups lead it to, so lazy links cost what is used.
type fabric struct {
	mn mocknet.Mocknet

	mu     sync.RWMutex
	linked map[[2]peer.ID]struct{}
	alive  map[peer.ID]bool

	streams atomic.Int64 // streams opened through simHosts
}

func newFabric(opts mocknet.LinkOptions) *fabric {
	mn := mocknet.New()
	mn.SetLinkDefaults(opts)
	return &fabric{mn: mn, linked: make(map[[2]peer.ID]struct{}), alive: make(map[peer.ID]bool)}
}

func pair(a, b peer.ID) [2]peer.ID {
	if a > b {
		a, b = b, a
	}
	return [2]peer.ID{a, b}
}

// reach makes sure from can dial to: to must be live, and the pair linked.
func (f *fabric) reach(from, to peer.ID) error {
	k := pair(from, to)
	f.mu.RLock()
	live := f.alive[to]
	_, ok := f.linked[k]
	f.mu.RUnlock()
	if !live {
		return fmt.Errorf("%w: %s", ErrOffline, to)
	}
	if ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.linked[k]; ok {
		return nil
	}
	if _, err := f.mn.LinkPeers(from, to); err != nil {
		return err
	}
	f.linked[k] = struct{}{}
	return nil
}

func (f *fabric) setAlive(p peer.ID, live bool) {
	f.mu.Lock()
	f.alive[p] = live
	f.mu.Unlock()
}

func (f *fabric) links() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.linked)
}

// simHost is a mocknet host whose dials go through the fabric: they fail at
// once for a peer that left, and link the pair on first use.
type simHost struct {
	host.Host
	f *fabric
}

var _ host.Host = (*simHost)(nil)

// NewStream opens a stream to p, linking the pair first if needed.
func (h *simHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.f.reach(h.ID(), p); err != nil {
		return nil, err
	}
	h.f.streams.Add(1)
	return h.Host.NewStream(ctx, p, pids...)
}

// Connect connects to ai, linking the pair first if needed.
func (h *simHost) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := h.f.reach(h.ID(), ai.ID); err != nil {
		return err
	}
	return h.Host.Connect(ctx, ai)
}

// IDService exposes the mocknet host's identify service, which kad waits on
// after connecting to bootstrap peers.
func (h *simHost) IDService() identify.IDService {
	return h.Host.(interface{ IDService() identify.IDService }).IDService()
}
