package kad_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/internal/testkit"
	"github.com/kadstore/kadstore/kad"
)

type syncBuffer = testkit.SyncBuffer

// A node whose bootstrap peer is down reports the failure, warns with the
// peer tried, keeps retrying, joins once the peer comes up, and bootstraps
// again when its routing table empties.
func TestBootstrapRetries(t *testing.T) {
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Learn a free address for the bootstrap peer, then take it down.
	first := newHost(t, libp2p.Identity(sk))
	ai := addrInfo(first)
	first.Close()

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	n := newKadNode(t, nil, kad.BootstrapPeers(ai), kad.Logger(logger),
		kad.BootstrapBackoff(10*time.Millisecond, 100*time.Millisecond))
	attempts := func(outcome string) float64 {
		return metric(t, n.reg, "kadstore_kad_bootstrap_attempts_total", map[string]string{"outcome": outcome})
	}
	err = n.Bootstrap(ctxTimeout(t, 30*time.Second))
	if !errors.Is(err, kad.ErrBootstrap) {
		t.Fatalf("Bootstrap with its only peer down: %v, want ErrBootstrap", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), ai.ID.String()) {
		t.Fatalf("no warning naming the peer tried:\n%s", logs.String())
	}
	p2ptest.WaitUntil(t, 30*time.Second, "a retry", func() bool { return attempts("failed") >= 2 })

	// The bootstrap peer comes up on the same address.
	var listen []string
	for _, a := range ai.Addrs {
		listen = append(listen, a.String())
	}
	up := func() *kadNode {
		return newKadNodeOn(t, newHost(t, libp2p.Identity(sk), libp2pListen(listen...)), nil)
	}
	boot := up()
	joined := func() bool { return inTable(n.RoutingPeers(), ai.ID) }
	p2ptest.WaitUntil(t, 30*time.Second, "the node to join", joined)
	if attempts("ok") < 1 {
		t.Fatal("the successful attempt was not counted")
	}

	// The peer goes down and the table empties: the node bootstraps again
	// (and fails), then rejoins when the peer is back.
	failed := attempts("failed")
	boot.Close()
	boot.h.Close()
	p2ptest.WaitUntil(t, 30*time.Second, "the disconnection", func() bool { return n.h.Network().Connectedness(ai.ID) != network.Connected })
	n.RoutingTable().RemovePeer(ai.ID)
	p2ptest.WaitUntil(t, 30*time.Second, "a bootstrap attempt after the table emptied", func() bool { return attempts("failed") > failed })
	up()
	p2ptest.WaitUntil(t, 30*time.Second, "the node to rejoin", joined)
}

// Without bootstrap peers, Bootstrap has nothing to fail at.
func TestBootstrapNoPeers(t *testing.T) {
	n := newKadNode(t, nil)
	if err := n.Bootstrap(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	var _ peer.ID = n.Self()
}
