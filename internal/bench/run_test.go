package bench_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kadstore/kadstore/internal/bench"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

func memBackend(wrap func(store.Store) store.Store) bench.Backend {
	return bench.Backend{
		Name: "memory",
		Open: func(_ string, opts store.Options) (store.Store, error) {
			var s store.Store = memstore.New(opts)
			if wrap != nil {
				s = wrap(s)
			}
			return s, nil
		},
	}
}

// progressLog records what Run reports, per phase.
type progressLog struct {
	mu     sync.Mutex
	order  []string
	totals map[string]int64
	added  map[string]int64
	cur    string
	open   bool
}

func (p *progressLog) Start(phase string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.order = append(p.order, phase)
	p.totals[phase], p.cur, p.open = total, phase, true
}

func (p *progressLog) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.added[p.cur] += n
}

func (p *progressLog) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = false
}

func TestRunMemory(t *testing.T) {
	const n = 3000
	prog := &progressLog{totals: map[string]int64{}, added: map[string]int64{}}
	res, err := bench.Run(t.Context(), bench.Config{
		Backend:  memBackend(nil),
		N:        n,
		Dir:      t.TempDir(),
		Lookups:  2000,
		Progress: prog,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.N != n || res.Keys != bench.NewWorkload(1, n, base).Keys() {
		t.Errorf("N = %d, Keys = %d", res.N, res.Keys)
	}
	if res.ExpiredRecords != n/10 {
		t.Errorf("ExpiredRecords = %d, want %d", res.ExpiredRecords, n/10)
	}
	if res.RawBytes <= 0 || res.RawPebbleDiskBytes <= 0 {
		t.Errorf("RawBytes = %d, RawPebbleDiskBytes = %d; want both > 0", res.RawBytes, res.RawPebbleDiskBytes)
	}
	if res.DiskBytes != 0 || res.ReopenFirstAnswerMs != 0 {
		t.Errorf("memory backend has DiskBytes %d, reopen %v ms; want 0", res.DiskBytes, res.ReopenFirstAnswerMs)
	}
	if res.LookupHitP50Us > res.LookupHitP99Us || res.LookupHitP99Us > res.LookupHitP999Us {
		t.Errorf("quantiles out of order: %v %v %v", res.LookupHitP50Us, res.LookupHitP99Us, res.LookupHitP999Us)
	}
	want := []string{"raw-pebble", "ingest", "bulk-ingest", "lookup-hit", "lookup-hit-serial", "lookup-miss", "scan", "expire"}
	if len(res.Phases) != len(want) {
		t.Fatalf("%d phases, want %v", len(res.Phases), want)
	}
	for i, p := range res.Phases {
		if p.Name != want[i] || prog.order[i] != want[i] {
			t.Errorf("phase %d is %q (progress %q), want %q", i, p.Name, prog.order[i], want[i])
		}
	}
	// Every phase that counts records reports all of them to the progress
	// bar; lookup phases report in steps of 256 and may stop short.
	for _, ph := range []string{"raw-pebble", "ingest", "bulk-ingest", "scan", "expire"} {
		if prog.added[ph] != prog.totals[ph] || prog.totals[ph] == 0 {
			t.Errorf("phase %s: progress added %d of total %d", ph, prog.added[ph], prog.totals[ph])
		}
	}
	if prog.open {
		t.Error("the last phase was never finished")
	}
}

// lossyStore drops every seventh record it is given: a store the benchmark
// must refuse to measure.
type lossyStore struct {
	store.Store
	mu sync.Mutex
	n  int
}

func (s *lossyStore) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	s.mu.Lock()
	kept := recs[:0:0]
	for _, r := range recs {
		if s.n++; s.n%7 != 0 {
			kept = append(kept, r)
		}
	}
	s.mu.Unlock()
	return s.Store.AddProviders(ctx, kept...)
}

func TestRunDetectsLostRecords(t *testing.T) {
	_, err := bench.Run(t.Context(), bench.Config{
		Backend:    memBackend(func(s store.Store) store.Store { return &lossyStore{Store: s} }),
		N:          900,
		Dir:        t.TempDir(),
		SkipRaw:    true,
		SkipIngest: true,
	})
	if !errors.Is(err, bench.ErrMismatch) {
		t.Fatalf("Run on a store that loses records: %v, want ErrMismatch", err)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, cfg := range []bench.Config{
		{Backend: memBackend(nil), N: 0, Dir: t.TempDir()},
		{Backend: memBackend(nil), N: 10},
		{N: 10, Dir: t.TempDir()},
	} {
		if _, err := bench.Run(t.Context(), cfg); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
}
