package kad_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
)

func advertises(n *kadNode) bool {
	for _, p := range n.h.Mux().Protocols() {
		if p == n.Protocol() {
			return true
		}
	}
	return false
}

func TestClientMode(t *testing.T) {
	server := newKadNode(t, nil)
	client := newKadNode(t, nil, kad.Mode(kad.ModeClient))
	other := newKadNode(t, nil)
	connect(t, client.h, server.h)
	connect(t, other.h, server.h)
	if client.Serving() || advertises(client) {
		t.Fatal("a client serves the protocol")
	}
	// The client uses servers, but no server adds the client.
	p2ptest.WaitUntil(t, 30*time.Second, "the client to add the server", func() bool { return inTable(client.RoutingPeers(), server.h.ID()) })
	// The server must know the other server before the client's lookup can
	// find it through the server.
	p2ptest.WaitUntil(t, 30*time.Second, "the server to add the other server", func() bool { return inTable(server.RoutingPeers(), other.h.ID()) })
	ctx := ctxTimeout(t, 30*time.Second)
	got, err := client.GetClosestPeers(ctx, []byte("key"))
	if err != nil || len(got) != 2 {
		t.Fatalf("client lookup: %v, %v", got, err)
	}
	if inTable(server.RoutingPeers(), client.h.ID()) || inTable(other.RoutingPeers(), client.h.ID()) {
		t.Fatal("a server added a client to its routing table")
	}
	if _, err := server.GetClosestPeers(ctx, []byte("key")); err != nil {
		t.Fatal(err)
	}
	if inTable(server.RoutingPeers(), client.h.ID()) {
		t.Fatal("a lookup added the client")
	}
}

func TestAutoMode(t *testing.T) {
	public := newKadNodeOn(t, newHost(t, libp2p.ForceReachabilityPublic()), nil, kad.Mode(kad.ModeAuto))
	private := newKadNodeOn(t, newHost(t, libp2p.ForceReachabilityPrivate()), nil, kad.Mode(kad.ModeAuto))
	p2ptest.WaitUntil(t, 30*time.Second, "the public node to serve", public.Serving)
	if private.Serving() || advertises(private) {
		t.Fatal("a privately reachable node in auto mode serves")
	}

	// Reachability changes switch serving on and off; peers follow through
	// identify.
	h := newHost(t)
	em, err := h.EventBus().Emitter(new(event.EvtLocalReachabilityChanged), eventbus.Stateful)
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	n := newKadNodeOn(t, h, nil, kad.Mode(kad.ModeAuto))
	watcher := newKadNode(t, nil)
	connect(t, watcher.h, n.h)
	if n.Serving() {
		t.Fatal("serving before any reachability event")
	}
	if err := em.Emit(event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityPublic}); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "a peer to add the node once public", func() bool { return inTable(watcher.RoutingPeers(), n.h.ID()) })
	if err := em.Emit(event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityPrivate}); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "the peer to drop the node once private", func() bool { return !inTable(watcher.RoutingPeers(), n.h.ID()) })
	if n.Serving() || advertises(n) {
		t.Fatal("still serving after becoming private")
	}
}

// The node logs its mode and, in auto mode, what to do on a LAN.
func TestModeLogged(t *testing.T) {
	for _, tc := range []struct {
		mode kad.ModeOpt
		want string
	}{
		{kad.ModeServer, "DHT mode server"},
		{kad.ModeClient, "DHT mode client"},
		{kad.ModeAuto, "use server mode there"},
	} {
		var logs syncBuffer
		n := newKadNode(t, nil, kad.Mode(tc.mode), kad.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
		if n.Mode() != tc.mode || !strings.Contains(logs.String(), tc.want) {
			t.Errorf("%v: Mode() = %v, log:\n%s", tc.mode, n.Mode(), logs.String())
		}
	}
}
