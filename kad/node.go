package kad

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/ipns"
	kb "github.com/libp2p/go-libp2p-kbucket"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/store"
)

// Node is a Kademlia DHT node on a go-libp2p host. It serves the protocol
// from its store (in server mode) and runs lookups for its callers. It
// implements go-libp2p's routing.Routing. All methods are safe for
// concurrent use.
type Node struct {
	host       host.Host
	store      store.Store
	wb         *store.WriteBehind // received provider records on their way to store; nil: none
	cfg        config
	log        *slog.Logger
	self       peer.ID
	proto      protocol.ID
	rt         *kb.RoutingTable
	validator  record.NamespacedValidator
	metrics    *metrics
	pool       *storePool
	msgr       *messenger
	putLocks   keyLocks
	admission  *writeAdmission // nil when the per-peer write limit is off
	keeperOnce sync.Once       // starts bootstrapKeeper

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background goroutines and inbound stream handlers

	mu       sync.Mutex // guards the fields below; never held across I/O
	serving  bool
	closed   bool
	inbound  map[network.Stream]struct{}
	refreshC chan chan error
}

var _ routing.Routing = (*Node)(nil)

// connTag and connTagWeight tag the connections of routing-table peers in
// the host's connection manager (go-libp2p-kad-dht tags them "kbucket", 5).
const (
	connTag       = "kad-routing-table"
	connTagWeight = 5
)

// New starts a Kademlia node on h that keeps its records in s. The node does
// not own h or s: Close stops the node, and the caller closes them after.
// Call Bootstrap to join a network.
func New(h host.Host, s store.Store, opts ...Option) (*Node, error) {
	if h == nil || s == nil {
		return nil, fmt.Errorf("%w: nil host or store", errBadOption)
	}
	cfg := defaults()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	validator := record.NamespacedValidator{
		"pk":   record.PublicKeyValidator{},
		"ipns": ipns.Validator{KeyBook: h.Peerstore()},
	}
	for ns, v := range cfg.validators {
		validator[ns] = v
	}
	rt, err := kb.NewRoutingTable(cfg.bucketSize, kb.ConvertPeerID(h.ID()), time.Minute, h.Peerstore(), time.Minute, nil)
	if err != nil {
		return nil, fmt.Errorf("kad: routing table: %w", err)
	}
	// Keep routing-table peers' connections when the connection manager
	// trims, as go-libp2p-kad-dht does.
	rt.PeerAdded = func(p peer.ID) { h.ConnManager().TagPeer(p, connTag, connTagWeight) }
	rt.PeerRemoved = func(p peer.ID) { h.ConnManager().UntagPeer(p, connTag) }
	var wbRef atomic.Pointer[store.WriteBehind]
	m, err := newMetrics(cfg.registerer, func() float64 { return float64(rt.Size()) }, func() float64 {
		if wb := wbRef.Load(); wb != nil {
			return float64(wb.Waiting())
		}
		return 0
	})
	if err != nil {
		rt.Close()
		return nil, err
	}
	log := cfg.logger.With("module", "kad", "self", h.ID())
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		host:      h,
		store:     s,
		cfg:       cfg,
		log:       log,
		self:      h.ID(),
		proto:     cfg.prefix + "/kad/1.0.0",
		rt:        rt,
		validator: validator,
		metrics:   m,
		pool:      newStorePool(cfg.storeConcurrency, m, log),
		ctx:       ctx,
		cancel:    cancel,
		inbound:   make(map[network.Stream]struct{}),
		refreshC:  make(chan chan error),
	}
	if cfg.writeBehind > 0 {
		n.wb = store.NewWriteBehind(timedAdds{s, m.storeLatency.WithLabelValues("AddProviders")}, store.WriteBehindOptions{
			MaxRecords: cfg.writeBehind,
			Logger:     log,
			OnFailure:  n.writeBehindFailed,
		})
		wbRef.Store(n.wb)
	}
	if cfg.writeRate > 0 {
		n.admission = newWriteAdmission(cfg.writeRate, cfg.writeBurst, maxWriteWait, cfg.writePeers)
	}
	n.msgr = newMessenger(h, n.proto, cfg.peerTimeout, m.sent)
	if err := n.startEvents(); err != nil {
		n.Close()
		return nil, err
	}
	switch cfg.mode {
	case ModeServer:
		n.setServing(true)
		n.log.Info("DHT mode server: serving the protocol")
	case ModeClient:
		n.setServing(false)
		n.log.Info("DHT mode client: not serving the protocol, so no node adds this one to its routing table")
	case ModeAuto:
		n.log.Info("DHT mode auto: acting as a client until go-libp2p reports the host publicly reachable; " +
			"on a LAN, on loopback or in a private network it never is: use server mode there")
	}
	n.wg.Add(1)
	go n.refreshLoop()
	return n, nil
}

// Close stops the node: it stops serving, resets its streams, stops its
// background work, waits for store calls in flight to return, and commits
// the received provider records its write-behind holds (so close the store
// after the node). It does not close the host or the store. Close is
// idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	wasServing := n.serving
	n.serving = false
	streams := make([]network.Stream, 0, len(n.inbound))
	for s := range n.inbound {
		streams = append(streams, s)
	}
	n.mu.Unlock()

	if wasServing {
		n.host.RemoveStreamHandler(n.proto)
	}
	n.cancel()
	for _, s := range streams {
		_ = s.Reset()
	}
	n.msgr.close()
	n.wg.Wait()
	n.pool.wait()
	if n.wb != nil {
		_ = n.wb.Close() // commits what the handlers accepted
	}
	n.rt.Close()
	if r := n.cfg.registerer; r != nil {
		for _, c := range n.metrics.collectors() {
			r.Unregister(c)
		}
	}
	return nil
}

// timedAdds times the write-behind's commits as store calls.
type timedAdds struct {
	store.Store
	latency prometheus.Observer
}

func (t timedAdds) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	start := time.Now()
	defer func() { t.latency.Observe(time.Since(start).Seconds()) }()
	return t.Store.AddProviders(ctx, recs...)
}

// Flush waits until the provider records received from peers before it was
// called are in the store (see WriteBehind), or ctx is done. Without a
// write-behind they are already there.
func (n *Node) Flush(ctx context.Context) error {
	if n.wb == nil {
		return nil
	}
	return n.wb.Flush(ctx)
}

// Host returns the node's host.
func (n *Node) Host() host.Host { return n.host }

// Store returns the node's store.
func (n *Node) Store() store.Store { return n.store }

// Protocol returns the protocol ID the node speaks.
func (n *Node) Protocol() protocol.ID { return n.proto }

// Serving reports whether the node currently serves the protocol (server
// mode, or auto mode while publicly reachable).
func (n *Node) Serving() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.serving
}

// Mode returns the mode the node was started in; Serving tells whether it
// serves now.
func (n *Node) Mode() ModeOpt { return n.cfg.mode }

// BucketSize is k: the peers each record is stored on (BucketSize option).
func (n *Node) BucketSize() int { return n.cfg.bucketSize }

// ProviderTTL is how long provider records live (ProviderTTL option).
func (n *Node) ProviderTTL() time.Duration { return n.cfg.providerTTL }

// RecordTTL is how long value records live (RecordTTL option).
func (n *Node) RecordTTL() time.Duration { return n.cfg.recordTTL }

// RoutingTable returns the node's routing table. Callers must not modify it.
func (n *Node) RoutingTable() *kb.RoutingTable { return n.rt }

// Validator returns the validator the node applies to value records.
func (n *Node) Validator() record.Validator { return n.validator }

// setServing switches serving on or off: registering the stream handler is
// what makes identify advertise the protocol, so a client is never added to
// other nodes' routing tables.
func (n *Node) setServing(on bool) {
	n.mu.Lock()
	if n.closed || n.serving == on {
		n.mu.Unlock()
		return
	}
	n.serving = on
	n.mu.Unlock()
	if on {
		n.host.SetStreamHandler(n.proto, n.handleStream)
	} else {
		n.host.RemoveStreamHandler(n.proto)
	}
	n.log.Debug("mode switched", "serving", on)
}

// startEvents subscribes to the host's events: identify results and protocol
// changes feed the routing table, disconnections drop idle streams, and in
// auto mode reachability changes switch serving on and off.
func (n *Node) startEvents() error {
	evts := []any{
		new(event.EvtPeerIdentificationCompleted),
		new(event.EvtPeerProtocolsUpdated),
		new(event.EvtPeerConnectednessChanged),
	}
	if n.cfg.mode == ModeAuto {
		evts = append(evts, new(event.EvtLocalReachabilityChanged))
	}
	sub, err := n.host.EventBus().Subscribe(evts)
	if err != nil {
		return fmt.Errorf("kad: subscribing to host events: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-n.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				switch e := e.(type) {
				case event.EvtPeerIdentificationCompleted:
					n.peerChanged(e.Peer)
				case event.EvtPeerProtocolsUpdated:
					n.peerChanged(e.Peer)
				case event.EvtPeerConnectednessChanged:
					if e.Connectedness != network.Connected {
						n.msgr.dropPeer(e.Peer)
					}
				case event.EvtLocalReachabilityChanged:
					on := e.Reachability == network.ReachabilityPublic
					if on != n.Serving() {
						n.log.Info("DHT mode auto: reachability changed", "reachability", e.Reachability.String(), "serving", on)
					}
					n.setServing(on)
				}
			}
		}
	}()
	return nil
}

// peerChanged adds a peer that advertises the protocol to the routing table,
// and removes one that stopped advertising it.
func (n *Node) peerChanged(p peer.ID) {
	if n.supportsProtocol(p) {
		n.addToTable(p)
	} else {
		n.rt.RemovePeer(p)
	}
}

func (n *Node) supportsProtocol(p peer.ID) bool {
	ok, err := n.host.Peerstore().SupportsProtocols(p, n.proto)
	return err == nil && len(ok) > 0
}

// addToTable tries to add a peer known to speak the protocol (it advertised it,
// or answered a request) to the routing table.
func (n *Node) addToTable(p peer.ID) {
	if p == n.self || n.ctx.Err() != nil {
		return
	}
	added, err := n.rt.TryAddPeer(p, true, false)
	if err == nil && !added {
		n.rt.UpdateLastSuccessfulOutboundQueryAt(p, time.Now())
	}
}

// keyLocks serialises PUT_VALUE handling per key, so that two puts of the same
// key cannot both pass Select against the old record and leave the worse one
// stored. Waiting honours the context; the map's mutex is never held across
// store I/O, and puts of different keys never wait for each other.
type keyLocks struct {
	mu   sync.Mutex
	busy map[string]chan struct{}
}

func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		if l.busy == nil {
			l.busy = make(map[string]chan struct{})
		}
		ch, held := l.busy[key]
		if !held {
			ch = make(chan struct{})
			l.busy[key] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.busy, key)
				l.mu.Unlock()
				close(ch)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrStoreBusy, ctx.Err())
		}
	}
}
