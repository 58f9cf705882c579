package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// wbRecord is provider record i of key k, expiring an hour after now.
func wbRecord(t testing.TB, now time.Time, k, i int) store.ProviderRecord {
	t.Helper()
	h := sha256.Sum256(fmt.Appendf(nil, "provider %d", i))
	p, err := peer.IDFromBytes(append([]byte{0x00, 0x20}, h[:]...))
	if err != nil {
		t.Fatal(err)
	}
	key := sha256.Sum256(fmt.Appendf(nil, "key %d", k))
	return store.ProviderRecord{
		Key:      append([]byte{0x12, 0x20}, key[:]...),
		Provider: p,
		Addrs:    []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", i%250+1))},
		Expires:  now.Add(time.Hour),
	}
}

// gate is a store whose AddProviders waits, while closed, until it is
// opened, and which tells entered about each call that reached it.
type gate struct {
	storetest.FailStore
	entered chan int // the size of each batch, as its call starts
	mu      sync.Mutex
	open    chan struct{}
}

func newGate(s store.Store) *gate {
	g := &gate{entered: make(chan int, 100), open: make(chan struct{})}
	g.FailStore = storetest.FailStore{Store: s}
	return g
}

func (g *gate) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	g.entered <- len(recs)
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	<-ch
	return g.FailStore.AddProviders(ctx, recs...)
}

func (g *gate) release() { close(g.open) }

func newMem(t *testing.T, now time.Time, limits store.Limits) store.Store {
	s := memstore.New(store.Options{Now: func() time.Time { return now }, Limits: limits})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestWriteBehindCommitsEverything(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s := newMem(t, now, store.Limits{})
	var failed []error
	wb := store.NewWriteBehind(s, store.WriteBehindOptions{MaxRecords: 16, OnFailure: func(_ store.ProviderRecord, err error) {
		failed = append(failed, err)
	}})
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := wb.Add(ctx, wbRecord(t, now, w*each+i, w)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
	if len(failed) != 0 {
		t.Fatalf("OnFailure called %d times: %v", len(failed), failed[0])
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ProviderRecords != writers*each {
		t.Fatalf("store holds %d records after Close, want %d", st.ProviderRecords, writers*each)
	}
	if err := wb.Add(ctx, wbRecord(t, now, 0, 0)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
	if err := wb.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWriteBehindBoundsWhatIsAtRisk holds a commit inside the store and
// checks that Add stops accepting once MaxRecords records wait behind it: at
// most 2×MaxRecords accepted records are ever uncommitted, what a kill -9
// can lose.
func TestWriteBehindBoundsWhatIsAtRisk(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	g := newGate(newMem(t, now, store.Limits{}))
	const maxRecords = 4
	wb := store.NewWriteBehind(g, store.WriteBehindOptions{MaxRecords: maxRecords})
	defer wb.Close()

	if err := wb.Add(ctx, wbRecord(t, now, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if n := <-g.entered; n != 1 {
		t.Fatalf("first commit has %d records, want 1", n)
	}
	for i := 1; i <= maxRecords; i++ {
		if err := wb.Add(ctx, wbRecord(t, now, i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	// The next record finds MaxRecords waiting: Add waits for the commit,
	// and gives up with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := wb.Add(cctx, wbRecord(t, now, 99, 0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add with %d records waiting: %v, want it to wait (context.Canceled)", maxRecords, err)
	}
	if got := wb.Waiting(); got != 1+maxRecords || got > 2*maxRecords {
		t.Fatalf("Waiting = %d, want %d", got, 1+maxRecords)
	}
	// A record waiting is served already.
	if got := wb.Pending(wbRecord(t, now, 3, 0).Key); len(got) != 1 {
		t.Fatalf("Pending of a waiting record's key: %d records, want 1", len(got))
	}

	g.release()
	if n := <-g.entered; n != maxRecords {
		t.Fatalf("second commit has %d records, want the %d that waited", n, maxRecords)
	}
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := wb.Waiting(); got != 0 {
		t.Fatalf("Waiting after Flush = %d", got)
	}
	if got := wb.Pending(wbRecord(t, now, 3, 0).Key); got != nil {
		t.Fatalf("Pending after Flush: %v", got)
	}
	st, err := g.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ProviderRecords != 1+maxRecords {
		t.Fatalf("store holds %d records, want %d", st.ProviderRecords, 1+maxRecords)
	}
}

// TestWriteBehindSplitsRefusedBatch commits a batch in which one record
// breaks the per-key limit: the store refuses the whole batch, and the
// write-behind must still store every other record and report only the
// refused one.
func TestWriteBehindSplitsRefusedBatch(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	g := newGate(newMem(t, now, store.Limits{MaxProvidersPerKey: 2}))
	var mu sync.Mutex
	var refused []store.ProviderRecord
	wb := store.NewWriteBehind(g, store.WriteBehindOptions{MaxRecords: 64, OnFailure: func(r store.ProviderRecord, err error) {
		if !errors.Is(err, store.ErrTooManyProviders) {
			t.Errorf("OnFailure error %v, want ErrTooManyProviders", err)
		}
		mu.Lock()
		refused = append(refused, r)
		mu.Unlock()
	}})
	defer wb.Close()

	// The first record's commit holds the gate while the batch gathers.
	if err := wb.Add(ctx, wbRecord(t, now, 100, 0)); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	var batch []store.ProviderRecord
	for i := range 20 {
		batch = append(batch, wbRecord(t, now, i, 1))
	}
	// Three providers of key 7: the third is one too many.
	batch[7] = wbRecord(t, now, 7, 2)
	batch = append(batch, wbRecord(t, now, 7, 3), wbRecord(t, now, 7, 4))
	for _, r := range batch {
		if err := wb.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	g.release()
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(refused) != 1 {
		t.Fatalf("%d records refused, want 1", len(refused))
	}
	st, err := g.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1 + len(batch) - 1); st.ProviderRecords != want {
		t.Fatalf("store holds %d records, want %d", st.ProviderRecords, want)
	}
	provs, err := g.Providers(ctx, batch[7].Key, 0)
	if err != nil || len(provs) != 2 {
		t.Fatalf("providers of the full key: %d, %v; want 2", len(provs), err)
	}
}

// TestWriteBehindReportsFailures gives the write-behind a store that fails
// and one that panics: every record goes to OnFailure, and the committing
// goroutine lives on.
func TestWriteBehindReportsFailures(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	mode := "fail"
	var mu sync.Mutex
	fs := &storetest.FailStore{Store: newMem(t, now, store.Limits{}), Fail: func(_ context.Context, op string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case op != storetest.OpAddProviders:
			return nil
		case mode == "fail":
			return store.ErrNoSpace
		case mode == "panic":
			panic("backend bug")
		}
		return nil
	}}
	var failures []error
	wb := store.NewWriteBehind(fs, store.WriteBehindOptions{OnFailure: func(_ store.ProviderRecord, err error) {
		failures = append(failures, err)
	}})
	defer wb.Close()
	step := func(m string, k int) {
		mu.Lock()
		mode = m
		mu.Unlock()
		if err := wb.Add(ctx, wbRecord(t, now, k, 0)); err != nil {
			t.Fatal(err)
		}
		if err := wb.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	step("fail", 1)
	step("panic", 2)
	step("ok", 3)
	if len(failures) != 2 || !errors.Is(failures[0], store.ErrNoSpace) || failures[1] == nil {
		t.Fatalf("failures = %v, want ErrNoSpace and the panic", failures)
	}
	st, err := fs.Stats(ctx)
	if err != nil || st.ProviderRecords != 1 {
		t.Fatalf("store holds %d records (%v), want the 1 written after the faults", st.ProviderRecords, err)
	}
}

func TestMergeProviders(t *testing.T) {
	now := time.Now()
	a, b, c := wbRecord(t, now, 1, 1), wbRecord(t, now, 1, 2), wbRecord(t, now, 1, 3)
	recs := []store.ProviderRecord{a, b, c}
	// Provider ID order.
	for i := range recs {
		for j := i + 1; j < len(recs); j++ {
			if recs[j].Provider < recs[i].Provider {
				recs[i], recs[j] = recs[j], recs[i]
			}
		}
	}
	base := []store.ProviderRecord{recs[0], recs[2]}
	newer := recs[0]
	newer.Expires = now.Add(2 * time.Hour)
	expired := recs[1]
	expired.Expires = now.Add(-time.Second)

	got := store.MergeProviders(base, []store.ProviderRecord{recs[1], newer}, 0, now)
	if len(got) != 3 || got[0].Provider != recs[0].Provider || got[1].Provider != recs[1].Provider || got[2].Provider != recs[2].Provider {
		t.Fatalf("merge: %v, want the three providers in ID order", got)
	}
	if !got[0].Expires.Equal(newer.Expires) {
		t.Fatalf("merge kept the stored record over the newer one")
	}
	if base[0].Expires.Equal(newer.Expires) {
		t.Fatalf("merge changed its base")
	}
	if got := store.MergeProviders(base, []store.ProviderRecord{expired}, 0, now); len(got) != 2 {
		t.Fatalf("merge with an expired record: %d records, want 2", len(got))
	}
	if got := store.MergeProviders(base, []store.ProviderRecord{recs[1]}, 2, now); len(got) != 2 || got[1].Provider != recs[1].Provider {
		t.Fatalf("merge with limit 2: %v", got)
	}
}
