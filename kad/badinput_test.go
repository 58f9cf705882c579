package kad_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/internal/pb"
)

// rawStream opens a protocol stream from h to the node, for writing bytes
// no well-behaved client would.
func rawStream(t testing.TB, h host.Host, n *kadNode) network.Stream {
	t.Helper()
	connect(t, h, n.h)
	s, err := h.NewStream(ctxTimeout(t, 30*time.Second), n.h.ID(), n.Protocol())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	return s
}

func frame(m *pb.Message) []byte { return pb.AppendFrame(nil, m) }

// expectReset reads from s until it ends and fails the test unless the node
// reset it (a clean close reads io.EOF).
func expectReset(t testing.TB, s network.Stream) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, s)
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("stream not reset: read ended with %v", err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// roundTrip sends req on s and returns the response.
func roundTrip(t testing.TB, s network.Stream, r *bufio.Reader, req *pb.Message) *pb.Message {
	t.Helper()
	if _, err := s.Write(frame(req)); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, err := pb.ReadFrame(r, pb.MaxMessageSize)
	if err != nil {
		t.Fatalf("reading the %v response: %v", req.Type, err)
	}
	var resp pb.Message
	if err := resp.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func TestBadInput(t *testing.T) {
	n := newKadNode(t, nil, kad.StreamIdleTimeout(300*time.Millisecond))
	peerB := newKadNode(t, nil)
	connect(t, peerB.h, n.h)
	p2ptest.WaitUntil(t, 30*time.Second, "a routing-table peer", func() bool { return len(n.RoutingPeers()) > 0 })
	attacker := newHost(t)
	other := newHost(t)
	otherAddrs := [][]byte{other.Addrs()[0].Bytes()}

	received := func(typ, outcome string) float64 {
		return metric(t, n.reg, "kadstore_kad_messages_received_total", map[string]string{"type": typ, "outcome": outcome})
	}
	rejected := func(reason string) float64 {
		return metric(t, n.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": reason})
	}
	long := bytes.Repeat([]byte("k"), 81)
	for _, tc := range []struct {
		name     string
		bytes    []byte
		typ      string
		outcome  string
		reason   string // records_rejected reason, if any
		noWrites bool
	}{
		{name: "oversized", bytes: binary.AppendUvarint(nil, pb.MaxMessageSize+1), typ: "none", outcome: "oversized"},
		{name: "garbage", bytes: append([]byte{5}, 0xff, 0xff, 0xff, 0xff, 0xff), typ: "none", outcome: "malformed"},
		{name: "overlong varint", bytes: bytes.Repeat([]byte{0xff}, 11), typ: "none", outcome: "malformed"},
		{name: "unknown type", bytes: frame(&pb.Message{Type: 42, Key: []byte("k")}), typ: "UNKNOWN", outcome: "unknown_type"},
		{name: "empty key", bytes: frame(&pb.Message{Type: pb.GetValue}), typ: "GET_VALUE", outcome: "bad_request"},
		{name: "overlong provider key", bytes: frame(&pb.Message{Type: pb.GetProviders, Key: long}), typ: "GET_PROVIDERS", outcome: "bad_request"},
		{name: "overlong key", bytes: frame(&pb.Message{Type: pb.FindNode, Key: bytes.Repeat([]byte("k"), kad.MaxKeySize+1)}), typ: "FIND_NODE", outcome: "bad_request"},
		{name: "put without record", bytes: frame(&pb.Message{Type: pb.PutValue, Key: []byte("/pk/x")}), typ: "PUT_VALUE", outcome: "bad_request"},
		{
			name:  "record key mismatch",
			bytes: frame(&pb.Message{Type: pb.PutValue, Key: []byte("/pk/a"), Record: &pb.Record{Key: []byte("/pk/b"), Value: []byte("v")}}),
			typ:   "PUT_VALUE", outcome: "bad_request", reason: "key_mismatch",
		},
		{
			name:  "unknown namespace",
			bytes: frame(&pb.Message{Type: pb.PutValue, Key: []byte("/x/a"), Record: &pb.Record{Key: []byte("/x/a"), Value: []byte("v")}}),
			typ:   "PUT_VALUE", outcome: "rejected", reason: "unknown_namespace",
		},
		{
			name:  "provider for another peer",
			bytes: frame(&pb.Message{Type: pb.AddProvider, Key: []byte("mh"), ProviderPeers: []pb.Peer{{ID: []byte(other.ID()), Addrs: otherAddrs}}}),
			typ:   "ADD_PROVIDER", outcome: "rejected", reason: "foreign_provider",
		},
		{
			name:  "provider without addresses",
			bytes: frame(&pb.Message{Type: pb.AddProvider, Key: []byte("mh"), ProviderPeers: []pb.Peer{{ID: []byte(attacker.ID())}}}),
			typ:   "ADD_PROVIDER", outcome: "rejected", reason: "no_addresses",
		},
		{name: "never writes", noWrites: true, typ: "none", outcome: "idle_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, beforeRej := received(tc.typ, tc.outcome), rejected(tc.reason)
			s := rawStream(t, attacker, n)
			if !tc.noWrites {
				if _, err := s.Write(tc.bytes); err != nil {
					t.Fatal(err)
				}
			}
			expectReset(t, s)
			p2ptest.WaitUntil(t, 30*time.Second, "the metric", func() bool { return received(tc.typ, tc.outcome) == before+1 })
			if tc.reason != "" && rejected(tc.reason) != beforeRej+1 {
				t.Errorf("records_rejected{%s} = %v, want %v", tc.reason, rejected(tc.reason), beforeRej+1)
			}
		})
	}

	ctx := ctxTimeout(t, 30*time.Second)
	if recs, err := n.st.Providers(ctx, []byte("mh"), 0); err != nil || len(recs) != 0 {
		t.Fatalf("a refused provider record was stored: %v, %v", recs, err)
	}
	if _, err := n.st.GetValue(ctx, []byte("/x/a")); err == nil {
		t.Fatal("a record in an unknown namespace was stored")
	}

	// The attacker can still talk sense on a new stream, and other peers were
	// never affected: several requests on one stream are answered in order.
	for _, h := range []host.Host{attacker, other} {
		s := rawStream(t, h, n)
		r := bufio.NewReader(s)
		if resp := roundTrip(t, s, r, &pb.Message{Type: pb.Ping, ClusterLevelRaw: 1}); resp.Type != pb.Ping {
			t.Fatalf("PING answered with %v", resp.Type)
		}
		resp := roundTrip(t, s, r, &pb.Message{Type: pb.FindNode, Key: []byte(peerB.h.ID())})
		if len(resp.CloserPeers) == 0 || !bytes.Equal(resp.CloserPeers[0].ID, []byte(peerB.h.ID())) {
			t.Fatalf("FIND_NODE of a known peer did not return it first: %d peers", len(resp.CloserPeers))
		}
		// ADD_PROVIDER for itself is stored and not answered; the next
		// request on the stream is.
		me := pb.Peer{ID: []byte(h.ID()), Addrs: [][]byte{h.Addrs()[0].Bytes()}}
		if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte("good"), ProviderPeers: []pb.Peer{me}})); err != nil {
			t.Fatal(err)
		}
		resp = roundTrip(t, s, r, &pb.Message{Type: pb.GetProviders, Key: []byte("good")})
		if !containsPeer(resp.ProviderPeers, h.ID()) {
			t.Fatalf("GET_PROVIDERS after ADD_PROVIDER on the same stream: %d providers", len(resp.ProviderPeers))
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the client closed its side: %v, want a clean close", err)
		}
	}
}

func containsPeer(ps []pb.Peer, id peer.ID) bool {
	for _, p := range ps {
		if bytes.Equal(p.ID, []byte(id)) {
			return true
		}
	}
	return false
}
