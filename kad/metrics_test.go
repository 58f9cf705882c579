package kad_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

func TestMetrics(t *testing.T) {
	a := newKadNode(t, nil)
	b := newKadNode(t, nil)
	connect(t, a.h, b.h)
	p2ptest.WaitUntil(t, 30*time.Second, "routing tables", func() bool {
		return inTable(a.RoutingPeers(), b.h.ID()) && inTable(b.RoutingPeers(), a.h.ID())
	})
	ctx := ctxTimeout(t, 30*time.Second)
	c := testCID(t, "metrics")
	if err := a.Provide(ctx, c, true); err != nil {
		t.Fatal(err)
	}
	key, val := pkRecord(t)
	if err := a.PutValue(ctx, key, val); err != nil {
		t.Fatal(err)
	}

	if got := metric(t, a.reg, "kadstore_kad_routing_table_peers", nil); got != 1 {
		t.Errorf("routing_table_peers = %v, want 1", got)
	}
	for _, typ := range []string{"FIND_NODE", "ADD_PROVIDER", "PUT_VALUE"} {
		if got := metric(t, a.reg, "kadstore_kad_messages_sent_total", map[string]string{"type": typ, "outcome": "ok"}); got < 1 {
			t.Errorf("a sent %s: %v", typ, got)
		}
	}
	p2ptest.WaitUntil(t, 30*time.Second, "b to count the ADD_PROVIDER", func() bool {
		return metric(t, b.reg, "kadstore_kad_messages_received_total", map[string]string{"type": "ADD_PROVIDER", "outcome": "ok"}) == 1
	})
	// b counts a message once it has answered it, so a's PutValue can
	// return (with b's answer) before b's count moves: wait for it.
	p2ptest.WaitUntil(t, 30*time.Second, "b to count the PUT_VALUE", func() bool {
		return metric(t, b.reg, "kadstore_kad_messages_received_total", map[string]string{"type": "PUT_VALUE", "outcome": "ok"}) == 1
	})
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"AddProviders", "PutValue", "GetValue"} {
		if got := metric(t, b.reg, "kadstore_kad_store_call_duration_seconds", map[string]string{"method": m}); got < 1 {
			t.Errorf("b's store latency samples for %s: %v", m, got)
		}
	}
}

func TestMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := memstore.New(store.Options{})
	defer st.Close()
	n, err := kad.New(newHost(t), st, kad.Registerer(reg))
	if err != nil {
		t.Fatal(err)
	}
	// A second node in the same registry collides.
	if _, err := kad.New(newHost(t), st, kad.Registerer(reg)); err == nil {
		t.Fatal("two nodes registered the same metrics")
	}
	// Close unregisters, so a new node can take the registry.
	n.Close()
	n, err = kad.New(newHost(t), st, kad.Registerer(reg))
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	// Nodes with a label each share one registry.
	shared := prometheus.NewRegistry()
	for _, id := range []string{"1", "2"} {
		n, err := kad.New(newHost(t), st, kad.Registerer(prometheus.WrapRegistererWith(prometheus.Labels{"node": id}, shared)))
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
	}
}
