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
	dto "github.com/prometheus/client_model/go"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

// newHost returns a go-libp2p host listening on loopback TCP only, closed at
// the end of the test.
func newHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	return p2ptest.NewHost(t, opts...)
}

// testOpts are the node options every test uses: short timeouts, so failure
// paths finish fast, and no periodic refresh.
func testOpts(extra ...kad.Option) []kad.Option {
	return append([]kad.Option{
		kad.Mode(kad.ModeServer),
		kad.PeerTimeout(30 * time.Second),
		kad.RefreshInterval(0),
	}, extra...)
}

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
	if st == nil {
		st = memstore.New(store.Options{})
		t.Cleanup(func() { st.Close() })
	}
	reg := prometheus.NewRegistry()
	n, err := kad.New(h, st, append(testOpts(kad.Registerer(reg)), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &kadNode{Node: n, h: h, st: st, reg: reg}
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

// metric returns the value of the counter or gauge name with the given
// labels in reg, 0 if absent.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func newReader(s network.Stream) *bufio.Reader { return bufio.NewReader(s) }

// libp2pListen replaces the loopback host's listen addresses.
func libp2pListen(addrs ...string) libp2p.Option {
	return func(cfg *libp2p.Config) error {
		cfg.ListenAddrs = nil
		return libp2p.ListenAddrStrings(addrs...)(cfg)
	}
}
