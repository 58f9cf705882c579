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
		Open: func(_ context.Context, _ string, opts store.Options) (store.Store, error) {
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

// sharedStores is a backend that keeps its stores outside the directory, as a
// database does: a store reopened on the same dir holds what was written
// before Close, Stats reports its size, and only Remove deletes it.
type sharedStores struct {
	mu      sync.Mutex
	stores  map[string]store.Store
	opened  map[string]int
	removed []string
}

// handle is one open "connection" to a shared store: closing it leaves the
// store's records in place.
type handle struct {
	store.Store
	closed bool
}

const sharedDiskBytes = 123_456

func (h *handle) Stats(ctx context.Context) (store.Stats, error) {
	if h.closed {
		return store.Stats{}, store.ErrClosed
	}
	st, err := h.Store.Stats(ctx)
	st.DiskBytes = sharedDiskBytes
	return st, err
}

func (h *handle) Close() error { h.closed = true; return nil }

func (b *sharedStores) backend() bench.Backend {
	return bench.Backend{
		Name:          "shared",
		Persistent:    true,
		DiskFromStats: true,
		Open: func(_ context.Context, dir string, opts store.Options) (store.Store, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			s, ok := b.stores[dir]
			if !ok {
				s = memstore.New(opts)
				b.stores[dir] = s
			}
			b.opened[dir]++
			return &handle{Store: s}, nil
		},
		Remove: func(_ context.Context, dir string) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			if s, ok := b.stores[dir]; ok {
				delete(b.stores, dir)
				b.removed = append(b.removed, dir)
				return s.Close()
			}
			return nil
		},
	}
}

func TestRunStoreOutsideDir(t *testing.T) {
	b := &sharedStores{stores: map[string]store.Store{}, opened: map[string]int{}}
	dir := t.TempDir()
	res, err := bench.Run(t.Context(), bench.Config{
		Backend: b.backend(),
		N:       1800,
		Dir:     dir,
		Lookups: 500,
		SkipRaw: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The disk figure comes from Stats of the open store, not from the
	// (empty) directory; the reopened store answered from the same records.
	if res.DiskBytes != sharedDiskBytes {
		t.Errorf("DiskBytes = %d, want the store's Stats figure %d", res.DiskBytes, sharedDiskBytes)
	}
	if res.ReopenFirstAnswerMs <= 0 {
		t.Errorf("ReopenFirstAnswerMs = %v, want > 0", res.ReopenFirstAnswerMs)
	}
	if got := b.opened[dir+"/store"]; got != 2 {
		t.Errorf("the store was opened %d times, want 2 (bulk ingest, reopen)", got)
	}
	// Every store the run created is removed: nothing is left behind in the
	// database.
	if len(b.stores) != 0 {
		t.Errorf("stores left after the run: %v", b.stores)
	}
	for _, name := range []string{"ingest", "store"} {
		found := false
		for _, r := range b.removed {
			found = found || r == dir+"/"+name
		}
		if !found {
			t.Errorf("store %s never removed (removed: %v)", name, b.removed)
		}
	}
}
