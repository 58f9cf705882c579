package kad_test

import (
	"bufio"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/kadtest"
	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
)

// newHost returns a go-libp2p host listening on loopback TCP only, closed at
// the end of the test.
func newHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	return p2ptest.NewHost(t, opts...)
}

// testOpts are the node options every test uses (kadtest.Options).
func testOpts(extra ...kad.Option) []kad.Option { return kadtest.Options(extra...) }

// kadNode is a kadtest.Node under the short names the tests use.
type kadNode struct {
	*kad.Node
	h   host.Host
	st  store.Store
	reg *prometheus.Registry
}

// newKadNode starts a kadstore node on a new host with a memstore (unless st
// is given), closed at the end of the test.
func newKadNode(t testing.TB, st store.Store, opts ...kad.Option) *kadNode {
	t.Helper()
	return newKadNodeOn(t, newHost(t), st, opts...)
}

func newKadNodeOn(t testing.TB, h host.Host, st store.Store, opts ...kad.Option) *kadNode {
	t.Helper()
	n := kadtest.NewOn(t, h, st, opts...)
	return &kadNode{Node: n.Node, h: n.Host, st: n.Store, reg: n.Registry}
}

// newGoNode starts a go-libp2p-kad-dht server node on a new host.
func newGoNode(t testing.TB, opts ...dht.Option) *dht.IpfsDHT {
	t.Helper()
	h := newHost(t)
	d, err := dht.New(h, append([]dht.Option{dht.Mode(dht.ModeServer), dht.DisableAutoRefresh()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func addrInfo(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, addrInfo(b)); err != nil {
		t.Fatal(err)
	}
}

func inTable(rtPeers []peer.ID, p peer.ID) bool {
	for _, q := range rtPeers {
		if q == p {
			return true
		}
	}
	return false
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// metric returns the sum of the counters or gauges name with the given
// labels in reg, 0 if absent (kadtest.Metric).
func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	return kadtest.Metric(t, reg, name, labels)
}

func newReader(s network.Stream) *bufio.Reader { return bufio.NewReader(s) }

// libp2pListen replaces the loopback host's listen addresses.
func libp2pListen(addrs ...string) libp2p.Option {
	return func(cfg *libp2p.Config) error {
		cfg.ListenAddrs = nil
		return libp2p.ListenAddrStrings(addrs...)(cfg)
	}
}
