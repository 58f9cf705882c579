package pebblestore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
	"github.com/kadstore/kadstore/store/storetest"
)

// keyFilterFixture writes n records of distinct new keys, one call each.
type keyFilterFixture struct {
	t     *testing.T
	dir   string
	clock *storetest.Clock
	s     *pebblestore.Store
	recs  []store.ProviderRecord
}

func newKeyFilterFixture(t *testing.T, n int) *keyFilterFixture {
	f := &keyFilterFixture{t: t, dir: t.TempDir(), clock: storetest.NewClock(storetest.Start)}
	rng := storetest.NewRand(t)
	for range n {
		f.recs = append(f.recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), f.clock.Now().Add(time.Hour)))
	}
	f.open()
	return f
}

func (f *keyFilterFixture) open() {
	s, err := pebblestore.Open(f.dir, testOptions(store.Options{Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler)}))
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
	f.t.Cleanup(func() { s.Close() })
	pebblestore.StartKeyFilter(s)
	pebblestore.WaitFilterBuilds(s)
}

func (f *keyFilterFixture) addAll(expires time.Time) {
	for _, r := range f.recs {
		r.Expires = expires
		if err := f.s.AddProviders(context.Background(), r); err != nil {
			f.t.Fatal(err)
		}
	}
}

// wantExact checks what a false "no providers" from the filter would break:
// the record count (a refresh taken for a new record counts twice).
func (f *keyFilterFixture) wantExact() {
	f.t.Helper()
	st, err := f.s.Stats(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	if st.ProviderRecords != int64(len(f.recs)) {
		f.t.Errorf("Stats: %d provider records, want %d", st.ProviderRecords, len(f.recs))
	}
}

// A write of a key the store does not hold skips its read once the filter is
// built; a refresh of a stored record still reads it and stays a refresh,
// before and after a reopen (which builds the filter from the store).
func TestKeyFilterSkipsReadsOfNewKeys(t *testing.T) {
	f := newKeyFilterFixture(t, 200)
	if !pebblestore.FilterReady(f.s) {
		t.Fatal("no key filter after the build on an empty store")
	}
	f.addAll(f.clock.Now().Add(time.Hour))
	skipped, _ := pebblestore.ReadsSaved(f.s)
	if skipped != int64(len(f.recs)) {
		t.Errorf("filter skipped %d reads of %d new keys", skipped, len(f.recs))
	}
	f.wantExact()

	pebblestore.ForgetRecent(f.s)
	f.addAll(f.clock.Now().Add(2 * time.Hour))
	if again, _ := pebblestore.ReadsSaved(f.s); again != skipped {
		// A Bloom filter errs only the other way: a stored key is never
		// skipped.
		t.Errorf("filter skipped %d reads of stored keys", again-skipped)
	}
	f.wantExact()

	f.s.Close()
	f.open()
	if !pebblestore.FilterReady(f.s) {
		t.Fatal("no key filter after reopening")
	}
	f.addAll(f.clock.Now().Add(3 * time.Hour))
	if skipped, _ := pebblestore.ReadsSaved(f.s); skipped != 0 {
		t.Errorf("after reopening, the filter skipped %d reads of stored keys", skipped)
	}
	f.wantExact()
}

// A filter that fills up is replaced by a larger one built from the store,
// and never forgets a key meanwhile.
func TestKeyFilterGrows(t *testing.T) {
	defer pebblestore.SetFilterMinKeys(64)()
	f := newKeyFilterFixture(t, 3000)
	first := pebblestore.FilterKeys(f.s)
	f.addAll(f.clock.Now().Add(time.Hour))
	pebblestore.WaitFilterBuilds(f.s)
	if got := pebblestore.FilterKeys(f.s); got < int64(len(f.recs)) {
		t.Errorf("filter sized for %d keys after %d were added (first %d)", got, len(f.recs), first)
	}
	pebblestore.ForgetRecent(f.s)
	f.addAll(f.clock.Now().Add(2 * time.Hour))
	f.wantExact()
}

// The recent keys answer the read of a key written just before, and forget
// what Expire and RemoveProvider delete.
func TestRecentKeys(t *testing.T) {
	f := newKeyFilterFixture(t, 50)
	ctx := context.Background()
	f.addAll(f.clock.Now().Add(time.Hour))
	f.addAll(f.clock.Now().Add(2 * time.Hour)) // refreshes, answered from memory
	if _, recent := pebblestore.ReadsSaved(f.s); recent != int64(len(f.recs)) {
		t.Errorf("recent keys answered %d of %d refreshes", recent, len(f.recs))
	}
	f.wantExact()
	// Remove half, expire the rest: adding them again makes new records.
	for _, r := range f.recs[:25] {
		if err := f.s.RemoveProvider(ctx, r.Key, r.Provider); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(3 * time.Hour)
	if n, err := f.s.Expire(ctx, f.clock.Now(), 0); err != nil || n != 25 {
		t.Fatalf("Expire: %d, %v; want 25", n, err)
	}
	f.addAll(f.clock.Now().Add(time.Hour))
	f.wantExact()
}

// A filter rebuilt because keys came and went is sized from the records
// stored, not from every key it ever saw: its memory stays bounded under
// churn.
func TestKeyFilterBoundedUnderChurn(t *testing.T) {
	defer pebblestore.SetFilterMinKeys(64)()
	f := newKeyFilterFixture(t, 200)
	ctx := context.Background()
	for round := range 12 {
		f.recs = f.recs[:0]
		rng := storetest.NewRand(t)
		for range 200 {
			f.recs = append(f.recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), f.clock.Now().Add(time.Hour)))
		}
		f.addAll(f.clock.Now().Add(time.Hour))
		f.wantExact()
		f.clock.Advance(2 * time.Hour)
		if n, err := f.s.Expire(ctx, f.clock.Now(), 0); err != nil || n != 200 {
			t.Fatalf("round %d: Expire %d, %v; want 200", round, n, err)
		}
		pebblestore.WaitFilterBuilds(f.s)
	}
	if got := pebblestore.FilterKeys(f.s); got > 1000 {
		t.Errorf("after 12 rounds of 200 keys added and expired, the filter is sized for %d keys", got)
	}
}

// The filter is built after the first commit, not at Open: a store opened
// only to be read builds none.
func TestKeyFilterStartsAtFirstCommit(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(store.Options{Logger: slog.New(slog.DiscardHandler)})
	for round := range 2 { // an empty store, then the same store reopened
		s, err := pebblestore.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Round 1: the record of round 0 is due, so Expire commits.
		n, err := s.Expire(context.Background(), time.Now().Add(2*time.Hour), 0)
		if err != nil || n != round {
			t.Fatalf("round %d: Expire %d, %v; want %d", round, n, err, round)
		}
		pebblestore.WaitFilterBuilds(s)
		if pebblestore.FilterReady(s) {
			t.Errorf("round %d: a key filter before any write of a provider record (Expire ran)", round)
		}
		rng := storetest.NewRand(t)
		r := storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), time.Now().Add(time.Hour))
		if err := s.AddProviders(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		pebblestore.WaitFilterBuilds(s)
		if !pebblestore.FilterReady(s) {
			t.Errorf("round %d: no key filter after the first write", round)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
