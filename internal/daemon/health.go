package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/store"
)

// healthCollectors are the metrics of a store's Health, read at each scrape:
// kadstore_store_degraded, _no_space and _failed (0 or 1),
// _corrupt_files, _lost_log_records (-1: the log was damaged, the count is
// unknown) and the counter _corrupt_reads_total.
func healthCollectors(hr store.HealthReporter) []prometheus.Collector {
	gauge := func(name, help string, f func(store.Health) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kadstore", Subsystem: "store", Name: name, Help: help},
			func() float64 { return f(hr.Health()) })
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		gauge("degraded", "1 while the store reports a problem (see /healthz and /v1/stats), else 0.",
			func(h store.Health) float64 { return flag(h.Degraded()) }),
		gauge("no_space", "1 while writes are refused for want of free disk space, else 0.",
			func(h store.Health) float64 { return flag(h.NoSpace) }),
		gauge("failed", "1 when the storage stopped taking writes until the store is reopened, else 0.",
			func(h store.Health) float64 { return flag(h.Failed) }),
		gauge("corrupt_files", "Distinct store files found damaged since the store was opened.",
			func(h store.Health) float64 { return float64(h.CorruptFiles) }),
		gauge("lost_log_records", "Writes found after a damaged part of the write-ahead log when the store was opened (-1: damaged, count unknown).",
			func(h store.Health) float64 { return float64(h.LostLogRecords) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "kadstore", Subsystem: "store", Name: "corrupt_reads_total",
			Help: "Reads that met damaged data since the store was opened.",
		}, func() float64 { return float64(hr.Health().CorruptReads) }),
	}
}

// recordsCollector is kadstore_store_records{kind="providers"|"values"}: the
// live records the store holds, from Store.Stats at each scrape (bounded by
// a timeout, so a slow store delays a scrape by at most that).
type recordsCollector struct {
	s    store.Store
	desc *prometheus.Desc
}

func newRecordsCollector(s store.Store) *recordsCollector {
	return &recordsCollector{s: s, desc: prometheus.NewDesc("kadstore_store_records",
		"Records the store holds, by kind (providers or values), as Store.Stats counts them.", []string{"kind"}, nil)}
}

func (c *recordsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *recordsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.s.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.ProviderRecords), "providers")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.ValueRecords), "values")
}
