// Package kadtest starts kad nodes for tests: each on its own loopback host
// (internal/p2ptest) with a store and a Prometheus registry of its own, closed
// when the test ends, and reads their metrics. The kad package's tests and
// the backends' DHT tests share it.
package kadtest

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

// Node is a kad.Node with its host, store and metrics registry.
type Node struct {
	*kad.Node
	Host     host.Host
	Store    store.Store
	Registry *prometheus.Registry
}

// Options are the node options tests start from: server mode, a peer
// timeout short enough for failure paths to finish, no periodic refresh.
// extra are added after them.
func Options(extra ...kad.Option) []kad.Option {
	return append([]kad.Option{
		kad.Mode(kad.ModeServer),
		kad.PeerTimeout(30 * time.Second),
		kad.RefreshInterval(0),
	}, extra...)
}

// New starts a node on a new loopback host; see NewOn.
func New(t testing.TB, st store.Store, opts ...kad.Option) *Node {
	t.Helper()
	return NewOn(t, p2ptest.NewHost(t), st, opts...)
}

// NewOn starts a node on h with Options and opts, on st (a new memstore,
// closed at the end of the test, when st is nil). The node is closed when the
// test ends, before its store.
func NewOn(t testing.TB, h host.Host, st store.Store, opts ...kad.Option) *Node {
	t.Helper()
	if st == nil {
		st = memstore.New(store.Options{})
		t.Cleanup(func() { st.Close() })
	}
	reg := prometheus.NewRegistry()
	n, err := kad.New(h, st, append(Options(kad.Registerer(reg)), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &Node{Node: n, Host: h, Store: st, Registry: reg}
}

// Metric returns the sum of the counters, gauges or histogram sample counts
// named name in reg whose labels include labels (0 if there are none).
func Metric(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !matchLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
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
