package kad

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/store"
)

// wireToAddrInfos decodes peers from a response, skipping invalid IDs and
// addresses.
func wireToAddrInfos(ps []pb.Peer) []peer.AddrInfo {
	out := make([]peer.AddrInfo, 0, len(ps))
	for i := range ps {
		id, err := peer.IDFromBytes(ps[i].ID)
		if err != nil {
			continue
		}
		ai := peer.AddrInfo{ID: id}
		for _, b := range ps[i].Addrs {
			if a, err := ma.NewMultiaddrBytes(b); err == nil {
				ai.Addrs = append(ai.Addrs, a)
			}
		}
		out = append(out, ai)
	}
	return out
}

func newRequest(t pb.MessageType, key []byte) *pb.Message {
	// ClusterLevelRaw 1 is what go-libp2p-kad-dht sends (level 0, +1).
	return &pb.Message{Type: t, Key: key, ClusterLevelRaw: 1}
}

// findNodeQuery asks a peer for the peers closest to key.
func (n *Node) findNodeQuery(key []byte) queryFunc {
	return func(ctx context.Context, p peer.ID) ([]peer.AddrInfo, error) {
		resp, err := n.msgr.request(ctx, p, newRequest(pb.FindNode, key))
		if err != nil {
			return nil, err
		}
		return wireToAddrInfos(resp.CloserPeers), nil
	}
}

// GetClosestPeers returns the k peers closest to key (by the SHA-256
// keyspace) that answered an iterative lookup, nearest first. On a context
// error it returns the peers found so far with the error.
func (n *Node) GetClosestPeers(ctx context.Context, key []byte) ([]peer.ID, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("kad: empty key")
	}
	return n.lookup(ctx, kb.ConvertKey(string(key)), n.findNodeQuery(key), nil)
}

// FindPeer looks up a peer's addresses: from the peerstore if the node is
// connected to it, otherwise by a lookup that stops when a peer returns the
// target with addresses. It returns ErrNotFound if the lookup ends without.
func (n *Node) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	if err := id.Validate(); err != nil {
		return peer.AddrInfo{}, err
	}
	if n.host.Network().Connectedness(id) == network.Connected {
		return n.host.Peerstore().PeerInfo(id), nil
	}
	var found atomic.Bool
	query := func(ctx context.Context, p peer.ID) ([]peer.AddrInfo, error) {
		closer, err := n.findNodeQuery([]byte(id))(ctx, p)
		for _, ai := range closer {
			if ai.ID == id && len(ai.Addrs) > 0 {
				n.host.Peerstore().AddAddrs(id, ai.Addrs, peerstore.TempAddrTTL)
				found.Store(true)
			}
		}
		if p == id && err == nil {
			found.Store(true)
		}
		return closer, err
	}
	_, err := n.lookup(ctx, kb.ConvertPeerID(id), query, found.Load)
	if found.Load() {
		return n.host.Peerstore().PeerInfo(id), nil
	}
	if err != nil && !errors.Is(err, ErrNoPeers) {
		return peer.AddrInfo{}, err
	}
	return peer.AddrInfo{}, ErrNotFound
}

// PutValue validates a value record, stores it locally (as published by this
// node) and sends it to the k closest peers. It returns ErrWorseRecord if the
// local store holds a better record, and an error matching ErrNoPeers if no
// peer accepted it (the local copy is kept).
func (n *Node) PutValue(ctx context.Context, key string, value []byte, _ ...routing.Option) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if err := n.putValue(ctx, []byte(key), value, n.self); err != nil {
		return err
	}
	peers, err := n.GetClosestPeers(ctx, []byte(key))
	if err != nil {
		return err
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			if n.SendPutValue(ctx, p, []byte(key), value) == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() == 0 {
		return fmt.Errorf("%w: no peer accepted the record (of %d)", ErrNoPeers, len(peers))
	}
	return nil
}

// SendPutValue sends one PUT_VALUE to peer p and checks that p echoed the
// value, which is how the protocol acknowledges a stored record. It is the
// building block for republishing and replication.
func (n *Node) SendPutValue(ctx context.Context, p peer.ID, key, value []byte) error {
	req := newRequest(pb.PutValue, key)
	req.Record = &pb.Record{Key: key, Value: value}
	resp, err := n.msgr.request(ctx, p, req)
	if err != nil {
		return err
	}
	if resp.Record == nil || !bytes.Equal(resp.Record.Value, value) {
		return fmt.Errorf("%w: PUT_VALUE not echoed", ErrBadResponse)
	}
	return nil
}

// quorumKey is the routing.Options.Other key of Quorum.
type quorumKey struct{}

// Quorum makes GetValue and SearchValue stop after n values (counting the
// local one); 0, the default, runs the lookup to its end.
func Quorum(n int) routing.Option {
	return func(o *routing.Options) error {
		if o.Other == nil {
			o.Other = make(map[any]any)
		}
		o.Other[quorumKey{}] = n
		return nil
	}
}

// GetValue returns the best value for key found among the local store and
// the closest peers, by the validator's Select, after Quorum values or at the
// end of the lookup. Peers among the closest that answered with a worse value
// or none are sent the best one (the specification's entry correction).
func (n *Node) GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error) {
	var best []byte
	err := n.searchValue(ctx, key, opts, func(v []byte) { best = v })
	if best == nil {
		if err == nil {
			err = ErrNotFound
		}
		return nil, err
	}
	return best, nil
}

// SearchValue streams ever better values for key as they are found, as
// GetValue would choose them; the channel closes when the search ends.
func (n *Node) SearchValue(ctx context.Context, key string, opts ...routing.Option) (<-chan []byte, error) {
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	out := make(chan []byte)
	go func() {
		defer close(out)
		_ = n.searchValue(ctx, key, opts, func(v []byte) {
			select {
			case out <- v:
			case <-ctx.Done():
			}
		})
	}()
	return out, nil
}

// searchValue runs a GET_VALUE lookup, calling better with each value that
// beats the previous best, then corrects stale peers.
func (n *Node) searchValue(ctx context.Context, key string, opts []routing.Option, better func([]byte)) error {
	var o routing.Options
	if err := o.Apply(opts...); err != nil {
		return err
	}
	quorum, _ := o.Other[quorumKey{}].(int)
	var (
		mu       sync.Mutex
		best     []byte
		count    int
		haveBest = map[peer.ID]bool{}
	)
	offer := func(from peer.ID, v []byte) {
		mu.Lock()
		defer mu.Unlock()
		count++
		if best != nil {
			if bytes.Equal(best, v) {
				haveBest[from] = true
				return
			}
			if i, err := n.validator.Select(key, [][]byte{best, v}); err != nil || i != 1 {
				return
			}
		}
		best, haveBest = v, map[peer.ID]bool{from: true}
		better(v)
	}
	if rec, err := storeCall(ctx, n.pool, "GetValue", func(ctx context.Context) (store.ValueRecord, error) {
		return n.store.GetValue(ctx, []byte(key))
	}); err == nil && n.validator.Validate(key, rec.Value) == nil {
		offer(n.self, rec.Value)
	}
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return quorum > 0 && count >= quorum
	}
	if o.Offline || done() {
		return nil
	}
	query := func(ctx context.Context, p peer.ID) ([]peer.AddrInfo, error) {
		resp, err := n.msgr.request(ctx, p, newRequest(pb.GetValue, []byte(key)))
		if err != nil {
			return nil, err
		}
		if r := resp.Record; r != nil {
			if !bytes.Equal(r.Key, []byte(key)) {
				return nil, fmt.Errorf("%w: record for another key", ErrBadResponse)
			}
			if n.validator.Validate(key, r.Value) == nil {
				offer(p, bytes.Clone(r.Value))
			}
		}
		return wireToAddrInfos(resp.CloserPeers), nil
	}
	closest, err := n.lookup(ctx, kb.ConvertKey(key), query, done)
	if errors.Is(err, ErrNoPeers) {
		err = nil
	}
	mu.Lock()
	final, stale := best, []peer.ID{}
	if best != nil {
		for _, p := range closest {
			if !haveBest[p] {
				stale = append(stale, p)
			}
		}
		if !haveBest[n.self] {
			stale = append(stale, n.self)
		}
	}
	mu.Unlock()
	if final != nil && ctx.Err() == nil {
		n.correct(ctx, []byte(key), final, stale)
	}
	return err
}

// correct sends the best value to peers that lacked it.
func (n *Node) correct(ctx context.Context, key, value []byte, peers []peer.ID) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			if p == n.self {
				_ = n.putValue(ctx, key, value, "")
				return
			}
			_ = n.SendPutValue(ctx, p, key, value)
		})
	}
	wg.Wait()
}

// Provide announces that this node provides c: the record is stored locally
// as one of the node's own (provider = this node, with its addresses), and,
// if broadcast is set, ADD_PROVIDER is sent to the k peers closest to c's
// multihash. It returns an error matching ErrNoPeers if no peer could be
// reached; the local record is kept.
func (n *Node) Provide(ctx context.Context, c cid.Cid, broadcast bool) error {
	if !c.Defined() {
		return fmt.Errorf("kad: undefined CID")
	}
	return n.ProvideKey(ctx, c.Hash(), broadcast)
}

// ProvideKey is Provide for a raw record key (a multihash for content).
func (n *Node) ProvideKey(ctx context.Context, key []byte, broadcast bool) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if len(key) == 0 || len(key) > MaxProviderKeySize {
		return fmt.Errorf("kad: provider key of %d bytes", len(key))
	}
	addrs := n.trimAddrs(n.host.Addrs())
	rec := store.ProviderRecord{Key: key, Provider: n.self, Addrs: addrs, Expires: n.cfg.now().Add(n.cfg.providerTTL)}
	if _, err := storeCall(ctx, n.pool, "AddProviders", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, n.store.AddProviders(ctx, rec)
	}); err != nil {
		return fmt.Errorf("kad: storing own provider record: %w", err)
	}
	if !broadcast {
		return nil
	}
	_, err := n.Announce(ctx, key)
	return err
}

// Announce sends ADD_PROVIDER for key, naming this node, to the closest
// peers a lookup finds, and returns how many took it. It stores nothing: see
// ProvideKey. It fails with ErrNoPeers when no peer was reached.
func (n *Node) Announce(ctx context.Context, key []byte) (reached int, err error) {
	peers, err := n.GetClosestPeers(ctx, key)
	if err != nil && len(peers) == 0 {
		return 0, err
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			if n.SendAddProviders(ctx, p, key) == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() == 0 {
		return 0, fmt.Errorf("%w: no peer reached (of %d)", ErrNoPeers, len(peers))
	}
	return int(ok.Load()), nil
}

// SendAddProviders announces this node as provider of each key to peer p,
// one ADD_PROVIDER per key on one stream. The protocol has no answer to
// ADD_PROVIDER; success means the peer read every message and closed the
// stream (a peer that refuses one resets it: an error). It is the
// building block for reproviding many keys to the peers of a region.
func (n *Node) SendAddProviders(ctx context.Context, p peer.ID, keys ...[]byte) error {
	addrs := n.host.Addrs()
	if len(addrs) == 0 {
		return fmt.Errorf("kad: no addresses to announce")
	}
	self := pb.Peer{ID: []byte(n.self)}
	for _, a := range addrs {
		self.Addrs = append(self.Addrs, a.Bytes())
	}
	msgs := make([]*pb.Message, len(keys))
	for i, k := range keys {
		msgs[i] = newRequest(pb.AddProvider, k)
		msgs[i].ProviderPeers = []pb.Peer{self}
	}
	return n.msgr.send(ctx, p, msgs...)
}

// FindProviders streams the providers of c as they are found, first from the
// local store, then from a GET_PROVIDERS lookup toward c's multihash; it
// stops after count providers (count <= 0: at the end of the lookup) or when
// the loop breaks. A lookup error is yielded last.
func (n *Node) FindProviders(ctx context.Context, c cid.Cid, count int) iter.Seq2[peer.AddrInfo, error] {
	return func(yield func(peer.AddrInfo, error) bool) {
		if !c.Defined() {
			yield(peer.AddrInfo{}, fmt.Errorf("kad: undefined CID"))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := make(chan peer.AddrInfo)
		errc := make(chan error, 1)
		go func() {
			defer close(ch)
			errc <- n.findProviders(ctx, c.Hash(), count, ch)
		}()
		for ai := range ch {
			if !yield(ai, nil) {
				cancel()
				for range ch {
				}
				return
			}
		}
		if err := <-errc; err != nil && ctx.Err() == nil {
			yield(peer.AddrInfo{}, err)
		}
	}
}

// FindProvidersAsync is FindProviders as a channel, for go-libp2p's
// routing.ContentRouting. The channel closes when the search ends.
func (n *Node) FindProvidersAsync(ctx context.Context, c cid.Cid, count int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo)
	if !c.Defined() {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		_ = n.findProviders(ctx, c.Hash(), count, out)
	}()
	return out
}

// findProviders sends each new provider of key to out until count are sent,
// the lookup ends, or ctx ends.
func (n *Node) findProviders(ctx context.Context, key []byte, count int, out chan<- peer.AddrInfo) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	var (
		mu   sync.Mutex
		seen = map[peer.ID]bool{}
	)
	// emit sends ai unless it was sent before or enough were sent; it reports
	// false when the search should stop.
	emit := func(ai peer.AddrInfo) bool {
		mu.Lock()
		if seen[ai.ID] || (count > 0 && len(seen) >= count) {
			full := count > 0 && len(seen) >= count
			mu.Unlock()
			return !full
		}
		seen[ai.ID] = true
		full := count > 0 && len(seen) >= count
		mu.Unlock()
		select {
		case out <- ai:
		case <-ctx.Done():
			return false
		}
		return !full
	}
	enough := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return count > 0 && len(seen) >= count
	}
	local, err := storeCall(ctx, n.pool, "Providers", func(ctx context.Context) ([]store.ProviderRecord, error) {
		return n.providers(ctx, key)
	})
	if err != nil && ctx.Err() != nil {
		return err
	}
	for _, r := range local {
		addrs := r.Addrs
		if r.Provider == n.self {
			addrs = n.host.Addrs()
		}
		if !emit(peer.AddrInfo{ID: r.Provider, Addrs: addrs}) {
			return nil
		}
	}
	query := func(ctx context.Context, p peer.ID) ([]peer.AddrInfo, error) {
		resp, err := n.msgr.request(ctx, p, newRequest(pb.GetProviders, key))
		if err != nil {
			return nil, err
		}
		for _, ai := range wireToAddrInfos(resp.ProviderPeers) {
			if len(ai.Addrs) > 0 && ai.ID != n.self {
				n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
			}
			if !emit(ai) {
				break
			}
		}
		return wireToAddrInfos(resp.CloserPeers), nil
	}
	_, err = n.lookup(ctx, kb.ConvertKey(string(key)), query, enough)
	if errors.Is(err, ErrNoPeers) || enough() {
		return nil
	}
	return err
}
