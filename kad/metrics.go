package kad

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/kad/internal/pb"
)

// Outcomes of a received message, the "outcome" label of
// kadstore_kad_messages_received_total.
const (
	outcomeOK           = "ok"
	outcomeMalformed    = "malformed"     // not a protobuf Message
	outcomeOversized    = "oversized"     // length prefix above 4 MiB
	outcomeUnknownType  = "unknown_type"  // not one of the six types
	outcomeBadRequest   = "bad_request"   // empty or overlong key, missing or mismatched record
	outcomeRejected     = "rejected"      // a record the node refused (see records_rejected)
	outcomeStoreTimeout = "store_timeout" // the request deadline passed in the store or waiting for it
	outcomeStoreError   = "store_error"   // the store failed: an I/O error, damage (ErrCorrupt), a full disk (ErrNoSpace), unavailable storage, a recovered panic
	outcomeWriteError   = "write_error"   // the response could not be written
	outcomeIdleTimeout  = "idle_timeout"  // a stream sent no request within the idle timeout
	outcomeNotServer    = "not_server"    // a request arrived while the node is a client
)

// Reasons a record is rejected, the "reason" label of
// kadstore_kad_records_rejected_total.
const (
	reasonInvalid          = "invalid"           // the validator refused the value
	reasonUnknownNamespace = "unknown_namespace" // no validator for the key's namespace
	reasonWorse            = "worse_record"      // a better record is stored (Select)
	reasonKeyMismatch      = "key_mismatch"      // record key differs from the request key
	reasonForeignProvider  = "foreign_provider"  // ADD_PROVIDER for a peer other than the sender
	reasonNoAddrs          = "no_addresses"      // ADD_PROVIDER without a usable address
	reasonStoreLimit       = "store_limit"       // the store refused it (size, count, TTL limits)
	reasonProviderFull     = "provider_full"     // the provider has Limits.MaxRecordsPerProvider records stored
	reasonRateLimited      = "rate_limited"      // the sending peer is over its write rate (PeerWriteLimit)
)

// messageTypes are the "type" labels of the six message types.
var messageTypes = func() []string {
	var out []string
	for t := pb.PutValue; t.Known(); t++ {
		out = append(out, t.String())
	}
	return out
}()

type metrics struct {
	received     *prometheus.CounterVec
	sent         *prometheus.CounterVec
	storeLatency *prometheus.HistogramVec
	storePanics  *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	rtSize       prometheus.GaugeFunc
	bootstrap    *prometheus.CounterVec
	wbWaiting    prometheus.GaugeFunc
	wbLost       prometheus.Counter
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.received, m.sent, m.storeLatency, m.storePanics, m.rejected, m.rtSize, m.bootstrap, m.wbWaiting, m.wbLost}
}

func newMetrics(reg prometheus.Registerer, rtSize, wbWaiting func() float64) (*metrics, error) {
	const ns, sub = "kadstore", "kad"
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "messages_received_total",
			Help: "Kademlia messages received, by type and outcome.",
		}, []string{"type", "outcome"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "messages_sent_total",
			Help: "Kademlia requests and messages sent, by type and outcome (ok or error).",
		}, []string{"type", "outcome"}),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "store_call_duration_seconds",
			Help:    "Latency of store calls made by the node, by store method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method"}),
		storePanics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "store_panics_total",
			Help: "Store calls that panicked, by store method: recovered, returned as errors (outcome store_error), and logged.",
		}, []string{"method"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "records_rejected_total",
			Help: "Records received and not stored, by reason.",
		}, []string{"reason"}),
		rtSize: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "routing_table_peers",
			Help: "Peers in the routing table.",
		}, rtSize),
		bootstrap: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "bootstrap_attempts_total",
			Help: "Bootstrap attempts, by outcome: ok (the routing table has peers after it) or failed.",
		}, []string{"outcome"}),
		wbWaiting: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "write_behind_records",
			Help: "Provider records received from peers and accepted, not yet committed to the store.",
		}, wbWaiting),
		wbLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "write_behind_failed_total",
			Help: "Provider records received from peers and accepted that the store failed to keep (an I/O error, no space); refusals count in records_rejected_total.",
		}),
	}
	// Label sets known in advance start at zero, so that a dashboard sees
	// a rate of 0 rather than no series before the first event.
	for _, r := range []string{reasonInvalid, reasonUnknownNamespace, reasonWorse, reasonKeyMismatch,
		reasonForeignProvider, reasonNoAddrs, reasonStoreLimit, reasonProviderFull, reasonRateLimited} {
		m.rejected.WithLabelValues(r)
	}
	for _, o := range []string{"ok", "failed"} {
		m.bootstrap.WithLabelValues(o)
	}
	for _, t := range messageTypes {
		for _, o := range []string{outcomeOK, outcomeBadRequest, outcomeRejected, outcomeStoreTimeout, outcomeStoreError} {
			m.received.WithLabelValues(t, o)
		}
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("kad: metrics already registered (wrap the registerer with a label per node): %w", err)
			}
			return nil, fmt.Errorf("kad: registering metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}
