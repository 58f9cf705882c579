package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// call is one invocation of a Store method, for tests that try them all.
type call struct {
	name string
	do   func(ctx context.Context, s store.Store) error
}

// everyMethod returns a call of each Store method but Close, with valid
// arguments: a write of value and provider, and reads and removals of the
// records stored.
func everyMethod(value store.ValueRecord, provider store.ProviderRecord, stored store.ValueRecord, storedProvider store.ProviderRecord, now time.Time) []call {
	return []call{
		{"PutValue", func(ctx context.Context, s store.Store) error { return s.PutValue(ctx, value) }},
		{"GetValue", func(ctx context.Context, s store.Store) error { _, err := s.GetValue(ctx, stored.Key); return err }},
		{"DeleteValue", func(ctx context.Context, s store.Store) error { return s.DeleteValue(ctx, stored.Key) }},
		{"AddProviders", func(ctx context.Context, s store.Store) error { return s.AddProviders(ctx, provider) }},
		{"Providers", func(ctx context.Context, s store.Store) error {
			_, err := s.Providers(ctx, storedProvider.Key, 0)
			return err
		}},
		{"RemoveProvider", func(ctx context.Context, s store.Store) error {
			return s.RemoveProvider(ctx, storedProvider.Key, storedProvider.Provider)
		}},
		{"Scan providers", func(ctx context.Context, s store.Store) error {
			_, err := s.Scan(ctx, store.ScanOptions{Kind: store.Providers})
			return err
		}},
		{"Scan values", func(ctx context.Context, s store.Store) error {
			_, err := s.Scan(ctx, store.ScanOptions{Kind: store.Values})
			return err
		}},
		{"Expire", func(ctx context.Context, s store.Store) error { _, err := s.Expire(ctx, now, 0); return err }},
		{"Stats", func(ctx context.Context, s store.Store) error { _, err := s.Stats(ctx); return err }},
	}
}

func testContextCanceled(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	stored, storedValue := f.newProvider(f.key(), f.peer(), time.Minute), f.newValue("/test/stored", "", time.Minute)
	f.add(stored)
	f.put(storedValue)
	f.clock.Advance(time.Minute) // so that Expire has work to do
	fresh, freshValue := f.newProvider(f.key(), f.peer(), time.Hour), f.newValue("/test/fresh", "", time.Hour)

	canceled, cancel := context.WithCancel(f.ctx)
	cancel()
	expired, cancel := context.WithDeadline(f.ctx, time.Now().Add(-time.Second))
	defer cancel()
	for _, c := range everyMethod(freshValue, fresh, storedValue, stored, f.now()) {
		wantErr(t, c.name+" with a cancelled context", c.do(canceled, f.s), context.Canceled)
		wantErr(t, c.name+" past the context's deadline", c.do(expired, f.s), context.DeadlineExceeded)
	}
	// Nothing changed.
	f.wantStats(1, 1)
	f.wantNoValue(freshValue.Key)
	f.wantProviders(fresh.Key, 0)
	f.wantExpire(f.now(), 0, 2)
}

func testClosed(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	stored, storedValue := f.newProvider(f.key(), f.peer(), time.Hour), f.newValue("/test/stored", "", time.Hour)
	f.add(stored)
	f.put(storedValue)
	if err := f.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fresh, freshValue := f.newProvider(f.key(), f.peer(), time.Hour), f.newValue("/test/fresh", "", time.Hour)
	for _, c := range everyMethod(freshValue, fresh, storedValue, stored, f.now()) {
		wantErr(t, c.name+" after Close", c.do(f.ctx, f.s), store.ErrClosed)
	}
	if err := f.s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
	}
}

// worker is the state of one goroutine of testConcurrent: the records it
// owns, which no other goroutine writes.
type worker struct {
	f         *fixture
	rng       *rand.Rand
	peers     [2]peer.ID
	keys      [][]byte // own keys, then the keys shared by all workers
	providers map[store.Position]store.ProviderRecord
	values    map[string]store.ValueRecord
}

func (w *worker) step(ctx context.Context, s store.Store, id int) error {
	f := w.f
	key := w.keys[w.rng.IntN(len(w.keys))]
	p := w.peers[w.rng.IntN(2)]
	valueKey := fmt.Sprintf("/test/worker/%d/%d", id, w.rng.IntN(6))
	switch w.rng.IntN(9) {
	case 0, 1:
		var batch []store.ProviderRecord
		for range 1 + w.rng.IntN(3) {
			k := w.keys[w.rng.IntN(len(w.keys))]
			batch = append(batch, NewProviderRecord(w.rng, k, w.peers[w.rng.IntN(2)], f.now().Add(time.Duration(1+w.rng.IntN(3600))*time.Second)))
		}
		if err := s.AddProviders(ctx, batch...); err != nil {
			return fmt.Errorf("AddProviders: %w", err)
		}
		for _, r := range batch {
			w.providers[posOf(r)] = r
		}
	case 2:
		if err := s.RemoveProvider(ctx, key, p); err != nil {
			return fmt.Errorf("RemoveProvider: %w", err)
		}
		delete(w.providers, posOf(store.ProviderRecord{Key: key, Provider: p}))
	case 3:
		var pub peer.ID
		if w.rng.IntN(2) == 0 {
			pub = p
		}
		r := NewValueRecord(w.rng, []byte(valueKey), pub, f.now(), f.now().Add(time.Hour))
		if err := s.PutValue(ctx, r); err != nil {
			return fmt.Errorf("PutValue: %w", err)
		}
		w.values[valueKey] = r
	case 4:
		if err := s.DeleteValue(ctx, []byte(valueKey)); err != nil {
			return fmt.Errorf("DeleteValue: %w", err)
		}
		delete(w.values, valueKey)
	case 5:
		got, err := s.GetValue(ctx, []byte(valueKey))
		want, ok := w.values[valueKey]
		switch {
		case !ok && !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("GetValue(%q) of a deleted record: %s, %v", valueKey, fmtValue(got), err)
		case ok && err != nil:
			return fmt.Errorf("GetValue(%q): %w", valueKey, err)
		case ok && !got.Equal(want):
			return fmt.Errorf("GetValue(%q) = %s, want %s", valueKey, fmtValue(got), fmtValue(want))
		}
	case 6:
		// Other workers' providers of shared keys are left out.
		got, err := s.Providers(ctx, key, 0)
		if err != nil {
			return fmt.Errorf("Providers: %w", err)
		}
		got = filter(got, func(r store.ProviderRecord) bool { return r.Provider == w.peers[0] || r.Provider == w.peers[1] })
		var want []store.ProviderRecord
		for _, r := range w.providers {
			if string(r.Key) == string(key) {
				want = append(want, r)
			}
		}
		sortProviders(want)
		if d := diffProviders(got, want); d != "" {
			return fmt.Errorf("Providers: %s", d)
		}
	case 7:
		res, err := scan(ctx, s, store.ScanOptions{Kind: store.Providers, Peer: p, Limit: 4}, f.limits, f.now(), 0)
		if err != nil {
			return fmt.Errorf("Scan: %w", err)
		}
		var want []store.ProviderRecord
		for _, r := range w.providers {
			if r.Provider == p {
				want = append(want, r)
			}
		}
		sortProviders(want)
		if d := diffProviders(res.providers, want); d != "" {
			return fmt.Errorf("Scan of a worker's provider: %s", d)
		}
	case 8:
		// The clock stands still and every record is live: nothing to expire.
		if n, err := s.Expire(ctx, f.now(), 0); err != nil || n != 0 {
			return fmt.Errorf("Expire removed %d live records, err %v", n, err)
		}
	}
	return nil
}

func testConcurrent(t *testing.T, open OpenFunc) {
	// Workers run mixed operations at once on records they own (their own
	// peers, of their own and of shared keys), each checking every answer
	// against its own model; a reader checks the scan invariants meanwhile.
	// At the end the store holds exactly the union of the models.
	f := newFixture(t, open, store.Limits{})
	const workers, steps = 4, 300
	shared := [][]byte{f.key(), f.key(), f.key()}
	ws := make([]*worker, workers)
	for i := range ws {
		w := &worker{
			f:         f,
			rng:       rand.New(rand.NewPCG(f.rng.Uint64(), uint64(i))),
			peers:     [2]peer.ID{f.peer(), f.peer()},
			providers: make(map[store.Position]store.ProviderRecord),
			values:    make(map[string]store.ValueRecord),
		}
		for range 5 {
			w.keys = append(w.keys, f.key())
		}
		w.keys = append(w.keys, shared...)
		ws[i] = w
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range steps {
				if err := w.step(f.ctx, f.s, i); err != nil {
					t.Errorf("worker %d: %v", i, err)
					return
				}
			}
		}()
	}
	reader := make(chan error, 1)
	go func() {
		for {
			select {
			case <-done:
				reader <- nil
				return
			default:
			}
			for _, kind := range []store.Kind{store.Providers, store.Values} {
				if _, err := scan(f.ctx, f.s, store.ScanOptions{Kind: kind, Limit: 7}, f.limits, f.now(), 0); err != nil {
					reader <- err
					return
				}
			}
			if _, err := f.s.Stats(f.ctx); err != nil {
				reader <- err
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	if err := <-reader; err != nil {
		t.Errorf("reader: %v", err)
	}
	if t.Failed() {
		return
	}
	var provs []store.ProviderRecord
	var vals []store.ValueRecord
	for _, w := range ws {
		for _, r := range w.providers {
			provs = append(provs, r)
		}
		for _, r := range w.values {
			vals = append(vals, r)
		}
	}
	f.wantScanProviders(store.ScanOptions{}, provs)
	f.wantScanValues(store.ScanOptions{}, vals)
	f.wantStats(int64(len(provs)), int64(len(vals)))
	for _, k := range shared {
		f.wantProviders(k, 0, filter(provs, func(r store.ProviderRecord) bool { return slices.Equal(r.Key, k) })...)
	}
}
