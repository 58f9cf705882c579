package kad

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/store"
)

// handleStream serves one inbound stream: requests are read and answered in
// order until the remote closes its side, sends something invalid, stays idle
// past the idle timeout, or the node stops serving. Any failure resets the
// stream, as the specification asks ("on any error, the stream is reset");
// the protocol has no error response.
func (n *Node) handleStream(s network.Stream) {
	if !n.trackInbound(s) {
		_ = s.Reset()
		return
	}
	defer n.untrackInbound(s)
	from := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	var idle atomic.Bool
	timer := time.AfterFunc(n.cfg.streamIdleTimeout, func() {
		idle.Store(true)
		_ = s.Reset()
	})
	defer timer.Stop()
	for {
		raw, err := pb.ReadFrame(r, MaxMessageSize)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				_ = s.Close()
				return
			case errors.Is(err, pb.ErrTooLarge):
				n.metrics.received.WithLabelValues("none", outcomeOversized).Inc()
			case errors.Is(err, pb.ErrMalformed):
				n.metrics.received.WithLabelValues("none", outcomeMalformed).Inc()
			case idle.Load():
				n.metrics.received.WithLabelValues("none", outcomeIdleTimeout).Inc()
			}
			_ = s.Reset()
			return
		}
		if !timer.Stop() {
			return // the idle timer fired as the message arrived: the stream is reset
		}
		if !n.Serving() {
			n.metrics.received.WithLabelValues("none", outcomeNotServer).Inc()
			_ = s.Reset()
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.requestTimeout)
		resp, typ, outcome := n.handleMessage(ctx, from, raw)
		if outcome == outcomeOK && resp != nil {
			_ = s.SetWriteDeadline(time.Now().Add(n.cfg.requestTimeout))
			if err := pb.WriteFrame(s, resp); err != nil {
				outcome = outcomeWriteError
			}
			_ = s.SetWriteDeadline(time.Time{})
		}
		cancel()
		n.metrics.received.WithLabelValues(typ, outcome).Inc()
		if outcome != outcomeOK {
			_ = s.Reset()
			return
		}
		timer.Reset(n.cfg.streamIdleTimeout)
	}
}

func (n *Node) trackInbound(s network.Stream) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.inbound[s] = struct{}{}
	n.wg.Add(1)
	return true
}

func (n *Node) untrackInbound(s network.Stream) {
	n.mu.Lock()
	delete(n.inbound, s)
	n.mu.Unlock()
	n.wg.Done()
}

// handleMessage decodes and answers one request from peer from. It returns
// the response (nil for ADD_PROVIDER, which is never answered), the message
// type as a metric label, and the outcome; anything but outcomeOK means the
// stream is reset.
func (n *Node) handleMessage(ctx context.Context, from peer.ID, raw []byte) (*pb.Message, string, string) {
	var req pb.Message
	if err := req.Unmarshal(raw); err != nil {
		return nil, "none", outcomeMalformed
	}
	if !req.Type.Known() {
		return nil, "UNKNOWN", outcomeUnknownType
	}
	typ := req.Type.String()
	maxKey := MaxKeySize
	if req.Type == pb.AddProvider || req.Type == pb.GetProviders {
		maxKey = MaxProviderKeySize
	}
	if req.Type != pb.Ping && (len(req.Key) == 0 || len(req.Key) > maxKey) {
		return nil, typ, outcomeBadRequest
	}
	var (
		resp    *pb.Message
		outcome string
	)
	switch req.Type {
	case pb.Ping:
		resp, outcome = &pb.Message{Type: pb.Ping, Key: req.Key, ClusterLevelRaw: req.ClusterLevelRaw}, outcomeOK
	case pb.FindNode:
		resp, outcome = n.handleFindNode(from, &req), outcomeOK
	case pb.GetValue:
		resp, outcome = n.handleGetValue(ctx, from, &req)
	case pb.PutValue:
		resp, outcome = n.handlePutValue(ctx, from, &req)
	case pb.AddProvider:
		outcome = n.handleAddProvider(ctx, from, &req)
	case pb.GetProviders:
		resp, outcome = n.handleGetProviders(ctx, from, &req)
	}
	return resp, typ, outcome
}

// closerPeers returns the k peers of the routing table closest to key,
// leaving out the node itself and the requester (the specification's rule),
// with their addresses. Peers without a known address are left out: they
// could not be dialled from the answer.
func (n *Node) closerPeers(key []byte, from peer.ID) []pb.Peer {
	ids := n.rt.NearestPeers(kb.ConvertKey(string(key)), n.cfg.bucketSize+1)
	out := make([]pb.Peer, 0, min(len(ids), n.cfg.bucketSize))
	for _, id := range ids {
		if id == n.self || id == from {
			continue
		}
		if p, ok := n.wirePeer(id, n.host.Peerstore().Addrs(id)); ok {
			out = append(out, p)
		}
		if len(out) == n.cfg.bucketSize {
			break
		}
	}
	return out
}

// maxPeerRecordSize bounds one encoded peer, as go-libp2p-kad-dht does:
// addresses past it are dropped.
const maxPeerRecordSize = 8 << 10

// wirePeer encodes a peer for a response, or reports false if it has no
// address.
func (n *Node) wirePeer(id peer.ID, addrs []ma.Multiaddr) (pb.Peer, bool) {
	if len(addrs) == 0 {
		return pb.Peer{}, false
	}
	p := pb.Peer{ID: []byte(id), Addrs: make([][]byte, 0, len(addrs))}
	size := len(id) + 8
	for _, a := range addrs {
		b := a.Bytes()
		if size += len(b) + 4; size > maxPeerRecordSize {
			break
		}
		p.Addrs = append(p.Addrs, b)
	}
	if n.host.Network().Connectedness(id) == network.Connected {
		p.Connection = pb.Connected
	}
	return p, true
}

func (n *Node) handleFindNode(from peer.ID, req *pb.Message) *pb.Message {
	resp := &pb.Message{Type: pb.FindNode, ClusterLevelRaw: req.ClusterLevelRaw}
	closer := n.closerPeers(req.Key, from)
	// The specification's exception for peer lookups: the target itself is
	// returned, if its addresses are known, even if it is this node, the
	// requester or not a DHT server, so that any peer can be found.
	target := peer.ID(req.Key)
	if len(closer) == 0 || !bytes.Equal(closer[0].ID, req.Key) {
		addrs := n.host.Peerstore().Addrs(target)
		if target == n.self {
			addrs = n.host.Addrs()
		}
		if p, ok := n.wirePeer(target, addrs); ok {
			closer = slices.DeleteFunc(closer, func(q pb.Peer) bool { return bytes.Equal(q.ID, req.Key) })
			closer = slices.Insert(closer, 0, p)
		}
	}
	resp.CloserPeers = closer
	return resp
}

func (n *Node) handleGetValue(ctx context.Context, from peer.ID, req *pb.Message) (*pb.Message, string) {
	rec, err := storeCall(ctx, n.pool, "GetValue", func(ctx context.Context) (store.ValueRecord, error) {
		return n.store.GetValue(ctx, req.Key)
	})
	resp := &pb.Message{Type: pb.GetValue, Key: req.Key, ClusterLevelRaw: req.ClusterLevelRaw}
	switch {
	case err == nil:
		resp.Record = &pb.Record{Key: rec.Key, Value: rec.Value, TimeReceived: rec.Received.UTC().Format(time.RFC3339Nano)}
	case errors.Is(err, store.ErrNotFound):
	default:
		return nil, storeOutcome(err)
	}
	resp.CloserPeers = n.closerPeers(req.Key, from)
	return resp, outcomeOK
}

func (n *Node) handlePutValue(ctx context.Context, from peer.ID, req *pb.Message) (*pb.Message, string) {
	if req.Record == nil {
		return nil, outcomeBadRequest
	}
	if !bytes.Equal(req.Record.Key, req.Key) {
		n.reject(reasonKeyMismatch)
		return nil, outcomeBadRequest
	}
	if outcome, ok := n.admit(ctx, from); !ok {
		return nil, outcome
	}
	if err := n.putValue(ctx, req.Key, req.Record.Value, ""); err != nil {
		n.log.Debug("PUT_VALUE refused", "from", from, "err", err)
		return nil, n.putOutcome(err)
	}
	// go-libp2p-kad-dht checks that the response echoes the value it put.
	return &pb.Message{
		Type:            pb.PutValue,
		Key:             req.Key,
		Record:          &pb.Record{Key: req.Record.Key, Value: req.Record.Value, TimeReceived: req.Record.TimeReceived},
		ClusterLevelRaw: req.ClusterLevelRaw,
	}, outcomeOK
}

// putValue validates a value record, keeps the better of it and the stored
// record by the validator's Select, and stores it. publisher may be empty.
func (n *Node) putValue(ctx context.Context, key, value []byte, publisher peer.ID) error {
	if err := n.validator.Validate(string(key), value); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	unlock, err := n.putLocks.lock(ctx, string(key))
	if err != nil {
		return err
	}
	defer unlock()
	old, err := storeCall(ctx, n.pool, "GetValue", func(ctx context.Context) (store.ValueRecord, error) {
		return n.store.GetValue(ctx, key)
	})
	switch {
	case err == nil:
		if !bytes.Equal(old.Value, value) {
			best, err := n.validator.Select(string(key), [][]byte{value, old.Value})
			if err != nil {
				return fmt.Errorf("%w: select: %w", ErrInvalidRecord, err)
			}
			if best != 0 {
				return ErrWorseRecord
			}
		}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrCorrupt) && !errors.Is(err, ErrStorePanic):
		// A stored record that cannot be read is replaced.
	default:
		return err
	}
	now := n.cfg.now()
	rec := store.ValueRecord{Key: key, Value: value, Publisher: publisher, Received: now, Expires: now.Add(n.cfg.recordTTL)}
	_, err = storeCall(ctx, n.pool, "PutValue", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, n.store.PutValue(ctx, rec)
	})
	return err
}

// putOutcome classifies a putValue error, counting rejected records.
func (n *Node) putOutcome(err error) string {
	switch {
	case errors.Is(err, record.ErrInvalidRecordType):
		n.reject(reasonUnknownNamespace)
		return outcomeRejected
	case errors.Is(err, ErrInvalidRecord):
		n.reject(reasonInvalid)
		return outcomeRejected
	case errors.Is(err, ErrWorseRecord):
		n.reject(reasonWorse)
		return outcomeRejected
	case isRejection(err):
		n.rejectStoreLimit(err)
		return outcomeRejected
	}
	return storeOutcome(err)
}

// admit takes a write token of peer from (see writeAdmission), reporting the
// outcome of a refusal.
func (n *Node) admit(ctx context.Context, from peer.ID) (string, bool) {
	switch n.admission.admit(ctx, from) {
	case admitRefused:
		n.reject(reasonRateLimited)
		return outcomeRejected, false
	case admitCancelled:
		return storeOutcome(ctx.Err()), false
	}
	return outcomeOK, true
}

func (n *Node) rejectStoreLimit(err error) {
	if errors.Is(err, store.ErrProviderFull) {
		n.reject(reasonProviderFull)
		return
	}
	n.reject(reasonStoreLimit)
}

// writeBehindFailed counts an accepted provider record the store did not
// keep: refused for a limit, or lost to a failure (which the write-behind
// logs).
func (n *Node) writeBehindFailed(_ store.ProviderRecord, err error) {
	if isRejection(err) {
		n.rejectStoreLimit(err)
		return
	}
	n.metrics.wbLost.Inc()
}

// providers is the store's providers of key, with those a write-behind
// holds for it merged in.
func (n *Node) providers(ctx context.Context, key []byte) ([]store.ProviderRecord, error) {
	recs, err := n.store.Providers(ctx, key, 0)
	if err != nil || n.wb == nil {
		return recs, err
	}
	return store.MergeProviders(recs, n.wb.Pending(key), 0, n.cfg.now()), nil
}

func (n *Node) reject(reason string) { n.metrics.rejected.WithLabelValues(reason).Inc() }

// isRejection reports whether the store refused a record for its content or
// a configured limit (store.IsRejection), rather than failing; a panic is a
// failure whatever its value wraps.
func isRejection(err error) bool {
	return store.IsRejection(err) && !errors.Is(err, ErrStorePanic)
}

// storeOutcome classifies a store call's failure: store_timeout when the
// request's deadline passed, store_error for everything else (an I/O error,
// store.ErrCorrupt, store.ErrNoSpace, store.ErrUnavailable, ErrStorePanic).
func storeOutcome(err error) string {
	if errors.Is(err, ErrStorePanic) {
		return outcomeStoreError
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, ErrStoreBusy) {
		return outcomeStoreTimeout
	}
	return outcomeStoreError
}

func (n *Node) handleAddProvider(ctx context.Context, from peer.ID, req *pb.Message) string {
	// Only the sender may announce itself (the specification's rule): entries
	// for other peers are dropped and counted. Several entries for the sender
	// are merged into one record.
	var raw [][]byte
	found := false
	for i := range req.ProviderPeers {
		id, err := peer.IDFromBytes(req.ProviderPeers[i].ID)
		if err != nil || id != from {
			n.reject(reasonForeignProvider)
			continue
		}
		found = true
		raw = append(raw, req.ProviderPeers[i].Addrs...)
	}
	if !found {
		return outcomeRejected
	}
	if len(raw) == 0 {
		n.reject(reasonNoAddrs)
		return outcomeRejected
	}
	// As go-libp2p-kad-dht, the filter runs after the check for addresses: a
	// record whose addresses are all filtered out is stored without any.
	addrs := n.receivedAddrs(from, raw)
	if outcome, ok := n.admit(ctx, from); !ok {
		return outcome
	}
	rec := store.ProviderRecord{Key: req.Key, Provider: from, Addrs: addrs, Expires: n.cfg.now().Add(n.cfg.providerTTL)}
	var err error
	if n.wb != nil {
		// Waits only while the write-behind is full: the stream then reads
		// its next request as fast as the store commits.
		err = n.wb.Add(ctx, rec)
	} else {
		_, err = storeCall(ctx, n.pool, "AddProviders", func(ctx context.Context) (struct{}, error) {
			return struct{}{}, n.store.AddProviders(ctx, rec)
		})
	}
	if err != nil {
		if isRejection(err) {
			n.rejectStoreLimit(err)
			return outcomeRejected
		}
		return storeOutcome(err)
	}
	return outcomeOK
}

// receivedAddrs turns the addresses a provider sent into those stored with
// its record: undecodable ones are dropped, a trailing /p2p/<provider> is
// stripped (go-libp2p-kad-dht serves addresses without it), an address
// naming another peer is dropped, duplicates are dropped, the AddressFilter
// applies, and the result is trimmed to MaxProviderAddrs.
func (n *Node) receivedAddrs(from peer.ID, raw [][]byte) []ma.Multiaddr {
	var addrs []ma.Multiaddr
	for _, b := range raw {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			continue
		}
		a, id := peer.SplitAddr(a)
		if a == nil || (id != "" && id != from) {
			continue
		}
		if slices.ContainsFunc(addrs, a.Equal) {
			continue
		}
		addrs = append(addrs, a)
	}
	if n.cfg.addrFilter != nil {
		addrs = n.cfg.addrFilter(addrs)
	}
	return n.trimAddrs(addrs)
}

// trimAddrs keeps at most MaxProviderAddrs addresses.
func (n *Node) trimAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	if len(addrs) > n.cfg.maxAddrs {
		addrs = addrs[:n.cfg.maxAddrs]
	}
	return addrs
}

func (n *Node) handleGetProviders(ctx context.Context, from peer.ID, req *pb.Message) (*pb.Message, string) {
	recs, err := storeCall(ctx, n.pool, "Providers", func(ctx context.Context) ([]store.ProviderRecord, error) {
		return n.providers(ctx, req.Key)
	})
	if err != nil {
		return nil, storeOutcome(err)
	}
	resp := &pb.Message{Type: pb.GetProviders, Key: req.Key, ClusterLevelRaw: req.ClusterLevelRaw}
	resp.CloserPeers = n.closerPeers(req.Key, from)
	size := resp.Size()
	for _, r := range recs {
		addrs := r.Addrs
		if r.Provider == n.self {
			addrs = n.host.Addrs() // the node's own current addresses
		} else if len(addrs) == 0 {
			addrs = n.host.Peerstore().Addrs(r.Provider)
		}
		p, ok := n.wirePeer(r.Provider, addrs)
		if !ok {
			p = pb.Peer{ID: []byte(r.Provider)}
		}
		// Keep the response within the message cap, as go-libp2p-kad-dht does.
		if size += pb.PeerSize(&p); size > MaxMessageSize {
			break
		}
		resp.ProviderPeers = append(resp.ProviderPeers, p)
	}
	return resp, outcomeOK
}
