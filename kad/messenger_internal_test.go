package kad

import (
	"bufio"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad/internal/pb"
)

// A stream that carried unanswered messages (ADD_PROVIDER) is closed after
// them, not kept for reuse: a later request that reset it would drop the
// frames the peer had not read yet. The peer reads every frame and then the
// end of the stream; a peer that resets the stream instead (it refused a
// message) makes the send fail.
func TestSendClosesItsStream(t *testing.T) {
	const proto = "/test/kad"
	a, b := p2ptest.NewHost(t), p2ptest.NewHost(t)
	type streamEnd struct {
		adds int
		err  error
	}
	ends := make(chan streamEnd, 8)
	b.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		var end streamEnd
		for {
			raw, err := pb.ReadFrame(r, MaxMessageSize)
			if err != nil {
				end.err = err
				break
			}
			var m pb.Message
			if err := m.Unmarshal(raw); err != nil {
				end.err = err
				break
			}
			if m.Type == pb.AddProvider {
				end.adds++
				continue
			}
			if err := pb.WriteFrame(s, &pb.Message{Type: m.Type}); err != nil {
				end.err = err
				break
			}
		}
		ends <- end
	})
	if err := a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// A second protocol whose handler refuses: it reads one frame, resets.
	const refusing = "/test/kad-refusing"
	b.SetStreamHandler(refusing, func(s network.Stream) {
		_, _ = pb.ReadFrame(bufio.NewReader(s), MaxMessageSize)
		_ = s.Reset()
	})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sent"}, []string{"type", "outcome"})
	m := newMessenger(a, proto, 10*time.Second, sent)
	defer m.close()
	ctx := context.Background()

	// A request leaves its stream idle, for reuse.
	if _, err := m.request(ctx, b.ID(), &pb.Message{Type: pb.FindNode, Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.idle[b.ID()]); n != 1 {
		t.Fatalf("%d idle streams after a request, want 1", n)
	}
	// The send takes that stream, writes three ADD_PROVIDERs and closes it.
	msgs := []*pb.Message{{Type: pb.AddProvider, Key: []byte("1")}, {Type: pb.AddProvider, Key: []byte("2")}, {Type: pb.AddProvider, Key: []byte("3")}}
	if err := m.send(ctx, b.ID(), msgs...); err != nil {
		t.Fatal(err)
	}
	if n := len(m.idle[b.ID()]); n != 0 {
		t.Fatalf("%d idle streams after a send: the stream that carried ADD_PROVIDERs is kept for reuse", n)
	}
	select {
	case end := <-ends:
		if end.adds != 3 || !errors.Is(end.err, io.EOF) {
			t.Fatalf("the peer read %d ADD_PROVIDERs, then %v; want 3, then the end of the stream", end.adds, end.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer never saw the end of the stream that carried the ADD_PROVIDERs")
	}

	r := newMessenger(a, refusing, 10*time.Second, sent)
	defer r.close()
	if err := r.send(ctx, b.ID(), msgs...); err == nil {
		t.Fatal("a send the peer refused (reset) succeeded")
	}
}
