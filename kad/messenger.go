package kad

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/kad/internal/pb"
)

// maxIdleStreams is how many idle outbound streams are kept per peer for
// reuse. Concurrent requests to one peer open more streams; the extra ones are
// closed after use.
const maxIdleStreams = 2

// idleStreamTTL drops an idle outbound stream before a go-libp2p-kad-dht
// server's one-minute idle timeout can reset it under us.
const idleStreamTTL = 30 * time.Second

// messenger sends requests to peers. It reuses outbound streams, as the
// specification allows and go-libp2p-kad-dht does: a stream that completed a
// request cleanly goes back to a small per-peer idle list. A request that
// fails on a reused stream is retried once on a fresh stream, since the
// remote may have closed the idle stream meanwhile. Its mutex guards the idle
// lists only and is never held across I/O.
type messenger struct {
	host    host.Host
	proto   protocol.ID
	timeout time.Duration
	sent    *prometheus.CounterVec

	mu     sync.Mutex
	idle   map[peer.ID][]*outStream
	closed bool
}

type outStream struct {
	s     network.Stream
	r     *bufio.Reader
	since time.Time
}

func newMessenger(h host.Host, proto protocol.ID, timeout time.Duration, sent *prometheus.CounterVec) *messenger {
	return &messenger{host: h, proto: proto, timeout: timeout, sent: sent, idle: make(map[peer.ID][]*outStream)}
}

// request sends req to p and returns its response.
func (m *messenger) request(ctx context.Context, p peer.ID, req *pb.Message) (*pb.Message, error) {
	resp, err := m.exchange(ctx, p, req)
	m.count(req.Type, err)
	return resp, err
}

// send sends msgs to p on one stream (the form of ADD_PROVIDER, which is
// never answered), closes its side of the stream and waits for the peer to
// close its side: a server closes after it has read, and handled, every
// message before the end of the stream (go-libp2p-kad-dht's does, and so
// does kad's), and resets it if it refused one. So a nil error means the
// peer took every message, and a refusal, a reset or a timeout is an error,
// not a silent loss. The stream is not kept for reuse: a reset of an idle
// stream by a later request dropped the frames the peer had not read yet
// (about one ADD_PROVIDER in 400 under load in kadstore simulate --legacy).
// As for requests, a send that fails on a reused stream is tried once more
// on a fresh one; the messages are idempotent.
func (m *messenger) send(ctx context.Context, p peer.ID, msgs ...*pb.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	err := m.sendOn(ctx, p, msgs)
	for _, msg := range msgs {
		m.count(msg.Type, err)
	}
	return err
}

func (m *messenger) sendOn(ctx context.Context, p peer.ID, msgs []*pb.Message) error {
	for attempt := 0; ; attempt++ {
		os, reused, err := m.stream(ctx, p, attempt > 0)
		if err != nil {
			return err
		}
		if err = m.writeAll(ctx, os, msgs); err == nil {
			if err = m.awaitClose(ctx, os); err == nil {
				return nil
			}
		}
		_ = os.s.Reset()
		if !reused || ctx.Err() != nil {
			return err
		}
	}
}

// awaitClose closes os for writing and waits, under ctx, for the peer to
// close its side (io.EOF), then closes os.
func (m *messenger) awaitClose(ctx context.Context, os *outStream) error {
	if err := os.s.CloseWrite(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = os.s.Reset() })
	_, err := os.r.ReadByte()
	if !stop() {
		return ctx.Err()
	}
	switch {
	case errors.Is(err, io.EOF):
		return os.s.Close()
	case err == nil:
		return fmt.Errorf("%w: an answer to an unanswered message", ErrBadResponse)
	}
	return ctxErr(ctx, fmt.Errorf("kad: peer did not take the messages: %w", err))
}

// writeAll writes msgs to os, under ctx as roundTrip does.
func (m *messenger) writeAll(ctx context.Context, os *outStream, msgs []*pb.Message) error {
	if d, ok := ctx.Deadline(); ok {
		_ = os.s.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = os.s.Reset() })
	var err error
	for _, msg := range msgs {
		if err = pb.WriteFrame(os.s, msg); err != nil {
			break
		}
	}
	if !stop() {
		return ctx.Err()
	}
	return ctxErr(ctx, err)
}

func (m *messenger) count(t pb.MessageType, err error) {
	outcome := outcomeOK
	if err != nil {
		outcome = "error"
	}
	m.sent.WithLabelValues(t.String(), outcome).Inc()
}

func (m *messenger) exchange(ctx context.Context, p peer.ID, req *pb.Message) (*pb.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		os, reused, err := m.stream(ctx, p, attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := m.roundTrip(ctx, os, req)
		if err == nil {
			m.release(p, os)
			return resp, nil
		}
		_ = os.s.Reset()
		if !reused || ctx.Err() != nil || errors.Is(err, ErrBadResponse) {
			return nil, err
		}
	}
}

// stream returns an idle stream to p, or opens one. fresh skips idle streams.
func (m *messenger) stream(ctx context.Context, p peer.ID, fresh bool) (*outStream, bool, error) {
	if !fresh {
		m.mu.Lock()
		for list := m.idle[p]; len(list) > 0; list = m.idle[p] {
			os := list[len(list)-1]
			m.idle[p] = list[:len(list)-1]
			if time.Since(os.since) < idleStreamTTL {
				m.mu.Unlock()
				return os, true, nil
			}
			_ = os.s.Close()
		}
		m.mu.Unlock()
	}
	if m.isClosed() {
		return nil, false, ErrClosed
	}
	s, err := m.host.NewStream(ctx, p, m.proto)
	if err != nil {
		return nil, false, err
	}
	return &outStream{s: s, r: bufio.NewReader(s)}, false, nil
}

func (m *messenger) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

func (m *messenger) roundTrip(ctx context.Context, os *outStream, req *pb.Message) (*pb.Message, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = os.s.SetDeadline(d)
	}
	// A cancelled context unblocks the read or write by resetting the stream.
	stop := context.AfterFunc(ctx, func() { _ = os.s.Reset() })
	resp, err := exchangeOn(os, req)
	if !stop() {
		return nil, ctx.Err() // the stream was reset under us
	}
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	return resp, nil
}

func exchangeOn(os *outStream, req *pb.Message) (*pb.Message, error) {
	if err := pb.WriteFrame(os.s, req); err != nil {
		return nil, err
	}
	raw, err := pb.ReadFrame(os.r, MaxMessageSize)
	if err != nil {
		return nil, err
	}
	resp := new(pb.Message)
	if err := resp.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	if resp.Type != req.Type {
		return nil, fmt.Errorf("%w: %v answered with %v", ErrBadResponse, req.Type, resp.Type)
	}
	return resp, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// release returns a stream that completed cleanly to the idle list.
func (m *messenger) release(p peer.ID, os *outStream) {
	_ = os.s.SetDeadline(time.Time{})
	os.since = time.Now()
	m.mu.Lock()
	if !m.closed && len(m.idle[p]) < maxIdleStreams {
		m.idle[p] = append(m.idle[p], os)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	_ = os.s.Close()
}

// dropPeer closes the idle streams to a peer that disconnected.
func (m *messenger) dropPeer(p peer.ID) {
	m.mu.Lock()
	list := m.idle[p]
	delete(m.idle, p)
	m.mu.Unlock()
	for _, os := range list {
		_ = os.s.Reset()
	}
}

func (m *messenger) close() {
	m.mu.Lock()
	m.closed = true
	all := m.idle
	m.idle = make(map[peer.ID][]*outStream)
	m.mu.Unlock()
	for _, list := range all {
		for _, os := range list {
			_ = os.s.Reset()
		}
	}
}
