package daemon

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/store"
)

type fakeHealth struct {
	mu sync.Mutex
	h  store.Health
}

func (f *fakeHealth) Health() store.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.h
}

// The health metrics read the store's Health at each scrape.
func TestHealthCollectors(t *testing.T) {
	fh := &fakeHealth{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(healthCollectors(fh)...)
	values := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			if m.Gauge != nil {
				out[mf.GetName()] = m.Gauge.GetValue()
			} else {
				out[mf.GetName()] = m.Counter.GetValue()
			}
		}
		return out
	}
	for name, v := range values() {
		if v != 0 {
			t.Errorf("healthy store: %s = %v", name, v)
		}
	}
	fh.mu.Lock()
	fh.h = store.Health{Problems: []string{"disk full"}, CorruptFiles: 2, CorruptReads: 5, LostLogRecords: -1, NoSpace: true, Failed: true}
	fh.mu.Unlock()
	want := map[string]float64{
		"kadstore_store_degraded": 1, "kadstore_store_no_space": 1, "kadstore_store_failed": 1,
		"kadstore_store_corrupt_files": 2, "kadstore_store_corrupt_reads_total": 5, "kadstore_store_lost_log_records": -1,
	}
	got := values()
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}
