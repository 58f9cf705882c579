package pebblestore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
	"github.com/kadstore/kadstore/store/storetest"
)

// testOptions are light options for tests: many stores open at once.
func testOptions(opts store.Options) pebblestore.Options {
	return pebblestore.Options{Options: opts, CacheSize: 1 << 20, MemTableSize: 1 << 20}
}

func openTest(t testing.TB, dir string, opts store.Options) store.Store {
	t.Helper()
	s, err := pebblestore.Open(dir, testOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunPersistent(t, openTest)
}

// With every peer indexed, scans restricted to a peer take the peer index
// instead of filtering: the suite checks that path too.
func TestConformanceIndexAllPeers(t *testing.T) {
	storetest.RunPersistent(t, func(t testing.TB, dir string, opts store.Options) store.Store {
		t.Helper()
		o := testOptions(opts)
		o.IndexAllPeers = true
		s, err := pebblestore.Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// fixture is one test's store in its own directory, with a fake clock.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	opts  store.Options
	clock *storetest.Clock
	rng   *rand.Rand
	s     *pebblestore.Store
}

func newFixture(t *testing.T, limits store.Limits) *fixture {
	f := &fixture{
		t:     t,
		ctx:   t.Context(),
		dir:   t.TempDir(),
		clock: storetest.NewClock(storetest.Start),
		rng:   storetest.NewRand(t),
	}
	f.opts = store.Options{Limits: limits, Now: f.clock.Now, Logger: slog.New(slog.DiscardHandler)}
	f.open()
	return f
}

// open opens the fixture's directory (again), closing it at the end.
func (f *fixture) open() {
	f.t.Helper()
	s, err := pebblestore.Open(f.dir, testOptions(f.opts))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	f.s = s
}

func (f *fixture) reopen() {
	f.t.Helper()
	if err := f.s.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.open()
}

func (f *fixture) provider(key []byte, p peer.ID, ttl time.Duration) store.ProviderRecord {
	return storetest.NewProviderRecord(f.rng, key, p, f.clock.Now().Add(ttl))
}

func (f *fixture) add(rs ...store.ProviderRecord) {
	f.t.Helper()
	if err := f.s.AddProviders(f.ctx, rs...); err != nil {
		f.t.Fatalf("AddProviders: %v", err)
	}
}

func (f *fixture) wantStats(providers, values int64) {
	f.t.Helper()
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if st.ProviderRecords != providers || st.ValueRecords != values {
		f.t.Errorf("Stats = %d providers, %d values; want %d, %d", st.ProviderRecords, st.ValueRecords, providers, values)
	}
}

func (f *fixture) wantProviders(key []byte, want ...store.ProviderRecord) {
	f.t.Helper()
	got, err := f.s.Providers(f.ctx, key, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b store.ProviderRecord) int { return bytes.Compare([]byte(a.Provider), []byte(b.Provider)) })
	if !slices.EqualFunc(got, want, store.ProviderRecord.Equal) {
		f.t.Errorf("Providers(%x) = %d records %v, want %d %v", key[:6], len(got), providerIDs(got), len(want), providerIDs(want))
	}
}

func (f *fixture) wantExpire(want int) {
	f.t.Helper()
	n, err := f.s.Expire(f.ctx, f.clock.Now(), 0)
	if err != nil {
		f.t.Fatal(err)
	}
	if n != want {
		f.t.Errorf("Expire removed %d records, want %d", n, want)
	}
}

// wantNoKeys checks that the key spaces with the given tags hold no keys.
func (f *fixture) wantNoKeys(tags string) {
	f.t.Helper()
	for _, tag := range []byte(tags) {
		if n := pebblestore.KeysIn(f.s, tag); n != 0 {
			f.t.Errorf("%d keys left in %c|", n, tag)
		}
	}
}

// scanAll returns every live provider record and the corrupt ones skipped.
func (f *fixture) scanAll(opts store.ScanOptions) ([]store.ProviderRecord, int) {
	f.t.Helper()
	var recs []store.ProviderRecord
	skipped := 0
	opts.Kind = store.Providers
	for p, err := range store.Pages(f.ctx, f.s, opts) {
		if err != nil {
			f.t.Fatal(err)
		}
		recs = append(recs, p.Providers...)
		skipped += p.Skipped
	}
	return recs, skipped
}

func providerIDs(rs []store.ProviderRecord) []string {
	var out []string
	for _, r := range rs {
		s := r.Provider.String()
		out = append(out, s[len(s)-6:])
	}
	return out
}

// garbage is what the corruption tests write over records: short bytes that
// cannot hold a record, and long random bytes that can but fail the checksum.
var garbage = map[string][]byte{
	"short": []byte("garbage"),
	"long":  bytes.Repeat([]byte{0x5a, 0x01, 0xff, 0x00}, 40),
}

// A corrupt provider record is logged, counted in Page.Skipped and skipped by
// scans and lookups; it hides none of the others, and still counts as stored.
func TestCorruptProviderSkipped(t *testing.T) {
	for name, junk := range garbage {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, store.Limits{})
			key := storetest.RandomKey(f.rng)
			var recs []store.ProviderRecord
			for range 3 {
				recs = append(recs, f.provider(key, storetest.RandomPeer(f.rng), time.Hour))
			}
			for range 20 {
				recs = append(recs, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), time.Hour))
			}
			f.add(recs...)
			victim := recs[1]
			if err := pebblestore.CorruptProvider(f.s, key, victim.Provider, junk); err != nil {
				t.Fatal(err)
			}
			f.wantProviders(key, recs[0], recs[2])

			got, skipped := f.scanAll(store.ScanOptions{Limit: 7})
			if skipped != 1 || len(got) != len(recs)-1 {
				t.Errorf("Scan: %d records, %d skipped; want %d, 1", len(got), skipped, len(recs)-1)
			}
			for _, r := range got {
				if r.Provider == victim.Provider {
					t.Errorf("Scan returned the corrupt record")
				}
			}
			got, skipped = f.scanAll(store.ScanOptions{Peer: victim.Provider})
			if skipped != 1 || len(got) != 0 {
				t.Errorf("Scan of the victim's peer: %d records, %d skipped; want 0, 1", len(got), skipped)
			}
			f.wantStats(int64(len(recs)), 0)
		})
	}
}

// GetValue of a corrupt value record fails with ErrCorrupt; scans skip it.
func TestCorruptValue(t *testing.T) {
	f := newFixture(t, store.Limits{})
	now := f.clock.Now()
	a := storetest.NewValueRecord(f.rng, []byte("/pk/a"), "", now, now.Add(time.Hour))
	b := storetest.NewValueRecord(f.rng, []byte("/pk/b"), storetest.RandomPeer(f.rng), now, now.Add(time.Hour))
	for _, r := range []store.ValueRecord{a, b} {
		if err := f.s.PutValue(f.ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := pebblestore.CorruptValue(f.s, a.Key, garbage["long"]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.GetValue(f.ctx, a.Key); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("GetValue of a corrupt record: %v, want ErrCorrupt", err)
	}
	if got, err := f.s.GetValue(f.ctx, b.Key); err != nil || !got.Equal(b) {
		t.Errorf("GetValue of an intact record: %v, %v", got, err)
	}
	page, err := f.s.Scan(f.ctx, store.ScanOptions{Kind: store.Values})
	if err != nil {
		t.Fatal(err)
	}
	if page.Skipped != 1 || len(page.Values) != 1 || !page.Values[0].Equal(b) {
		t.Errorf("Scan: %d values, %d skipped; want only b, 1 skipped", len(page.Values), page.Skipped)
	}
	if err := f.s.DeleteValue(f.ctx, a.Key); err != nil {
		t.Fatal(err)
	}
	f.wantStats(0, 1)
	// The corrupt record's time-index entry could not be found when it was
	// deleted; Expire must drop it without counting a removal.
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(1)
	f.wantStats(0, 0)
	f.wantNoKeys("vegc") // everything expired
}

// Replacing a corrupt record leaves its time-index entry behind (its expiry
// cannot be read); that orphaned entry must never remove the records that
// come after it, nor change the counts.
func TestCorruptRecordReplaced(t *testing.T) {
	t.Run("LaterExpiry", func(t *testing.T) {
		f := newFixture(t, store.Limits{})
		key, p := storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng)
		f.add(f.provider(key, p, time.Hour))
		if err := pebblestore.CorruptProvider(f.s, key, p, garbage["long"]); err != nil {
			t.Fatal(err)
		}
		fresh := f.provider(key, p, 3*time.Hour)
		f.add(fresh)
		f.clock.Advance(2 * time.Hour) // the orphan is due, the record is not
		f.wantExpire(0)
		f.wantProviders(key, fresh)
		f.wantStats(1, 0)
		f.clock.Advance(2 * time.Hour)
		f.wantExpire(1)
		f.wantStats(0, 0)
		if n := pebblestore.KeysIn(f.s, 'g'); n != 0 {
			t.Errorf("%d guards left", n)
		}
	})
	t.Run("EarlierExpiry", func(t *testing.T) {
		f := newFixture(t, store.Limits{})
		key, p := storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng)
		f.add(f.provider(key, p, 3*time.Hour))
		if err := pebblestore.CorruptProvider(f.s, key, p, garbage["short"]); err != nil {
			t.Fatal(err)
		}
		f.add(f.provider(key, p, time.Hour))
		f.reopen() // the guard is persistent
		f.clock.Advance(2 * time.Hour)
		f.wantExpire(1)
		// Re-added after the orphan's expiry: the orphan falls due first.
		again := f.provider(key, p, 3*time.Hour)
		f.add(again)
		f.clock.Advance(2 * time.Hour)
		f.wantExpire(0)
		f.wantProviders(key, again)
		f.wantStats(1, 0)
		if n := pebblestore.KeysIn(f.s, 'g'); n != 0 {
			t.Errorf("%d guards left after the orphan was dropped", n)
		}
	})
	t.Run("Removed", func(t *testing.T) {
		f := newFixture(t, store.Limits{MaxRecordsPerProvider: 10})
		key, p := storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng)
		f.add(f.provider(key, p, time.Hour), f.provider(storetest.RandomKey(f.rng), p, time.Hour))
		if err := pebblestore.CorruptProvider(f.s, key, p, garbage["long"]); err != nil {
			t.Fatal(err)
		}
		if err := f.s.RemoveProvider(f.ctx, key, p); err != nil {
			t.Fatal(err)
		}
		f.wantStats(1, 0)
		f.clock.Advance(2 * time.Hour)
		f.wantExpire(1)
		f.wantStats(0, 0)
		f.wantNoKeys("peocg") // everything expired
	})
}

// Records, values, counts and limits survive Close and Open.
func TestReopen(t *testing.T) {
	f := newFixture(t, store.Limits{MaxRecords: 30})
	var recs []store.ProviderRecord
	for range 25 {
		recs = append(recs, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), time.Hour))
	}
	f.add(recs...)
	now := f.clock.Now()
	for i := range 5 {
		v := storetest.NewValueRecord(f.rng, []byte{'k', byte(i)}, "", now, now.Add(time.Hour))
		if err := f.s.PutValue(f.ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	f.reopen()
	f.wantStats(25, 5)
	for _, r := range recs {
		f.wantProviders(r.Key, r)
	}
	// The restored counts enforce MaxRecords.
	err := f.s.AddProviders(f.ctx, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), time.Hour))
	if !errors.Is(err, store.ErrStoreFull) {
		t.Errorf("AddProviders beyond MaxRecords after reopen: %v, want ErrStoreFull", err)
	}
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.DiskBytes <= 0 {
		t.Errorf("Stats.DiskBytes = %d, want > 0", st.DiskBytes)
	}
}

// A second Open of an open directory fails at once with ErrLocked.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := pebblestore.Open(dir, testOptions(store.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := pebblestore.Open(dir, testOptions(store.Options{})); !errors.Is(err, pebblestore.ErrLocked) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = pebblestore.Open(dir, testOptions(store.Options{}))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()
}

// Expire reads only the time-index entries that are due: its cost follows
// what expired, not what is stored.
func TestExpireVisitsOnlyDue(t *testing.T) {
	f := newFixture(t, store.Limits{MaxTTL: 48 * time.Hour})
	var recs []store.ProviderRecord
	for range 2000 {
		recs = append(recs, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), 40*time.Hour))
	}
	for range 30 {
		recs = append(recs, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), time.Hour))
	}
	f.add(recs...)
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(30)
	if n := pebblestore.ExpireVisited(f.s); n != 30 {
		t.Errorf("Expire read %d index entries to remove 30 of %d records", n, len(recs))
	}
	// After the clock jumps back 60 h, the 2000 records lie more than
	// 2×MaxTTL ahead; Expire removes them from the back of the index.
	f.clock.Advance(-62 * time.Hour)
	f.wantExpire(2000)
	if n := pebblestore.ExpireVisited(f.s); n != 2030 {
		t.Errorf("Expire read %d index entries in all, want 2030", n)
	}
	f.wantStats(0, 0)
	f.wantNoKeys("peo")
}

// Per-provider counts are built from the peer index when
// MaxRecordsPerProvider is switched on, and kept by every write and Expire.
func TestProviderCountsRebuilt(t *testing.T) {
	f := newFixture(t, store.Limits{})
	p, q := storetest.RandomPeer(f.rng), storetest.RandomPeer(f.rng)
	addFor := func(id peer.ID, ttl time.Duration) error {
		return f.s.AddProviders(f.ctx, f.provider(storetest.RandomKey(f.rng), id, ttl))
	}
	for range 3 {
		if err := addFor(p, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := addFor(q, 3*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	f.opts.Limits.MaxRecordsPerProvider = 3
	f.reopen()
	if err := addFor(p, time.Hour); !errors.Is(err, store.ErrProviderFull) {
		t.Errorf("4th record of p: %v, want ErrProviderFull", err)
	}
	if err := addFor(q, 3*time.Hour); err != nil {
		t.Errorf("3rd record of q: %v", err)
	}
	if err := addFor(q, 3*time.Hour); !errors.Is(err, store.ErrProviderFull) {
		t.Errorf("4th record of q: %v, want ErrProviderFull", err)
	}
	// Expire frees p's places.
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(3)
	if err := addFor(p, 3*time.Hour); err != nil {
		t.Errorf("record of p after Expire: %v", err)
	}
	// Off, the counts are dropped; on again, they are rebuilt, not stale.
	f.opts.Limits.MaxRecordsPerProvider = 0
	f.reopen()
	if n := pebblestore.KeysIn(f.s, 'c'); n != 0 {
		t.Errorf("%d per-provider counts kept while the limit is off", n)
	}
	for range 2 {
		if err := addFor(p, 3*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	f.opts.Limits.MaxRecordsPerProvider = 3
	f.reopen()
	if err := addFor(p, 3*time.Hour); !errors.Is(err, store.ErrProviderFull) {
		t.Errorf("record of p beyond the rebuilt count: %v, want ErrProviderFull", err)
	}
}

// Concurrent AddProviders calls are committed in groups, yet each call is all
// or nothing and sees the calls committed before it: a call that failed on a
// limit stored nothing, one that succeeded stored everything, and no key has
// more providers than the limit.
func TestGroupCommitAtomic(t *testing.T) {
	for _, sync := range []bool{false, true} {
		name := "NoSync"
		if sync {
			name = "Sync"
		}
		t.Run(name, func(t *testing.T) { testGroupCommitAtomic(t, sync) })
	}
}

func testGroupCommitAtomic(t *testing.T, syncWrites bool) {
	const maxPerKey = 4
	clock := storetest.NewClock(storetest.Start)
	opts := testOptions(store.Options{
		Limits: store.Limits{MaxProvidersPerKey: maxPerKey},
		Now:    clock.Now,
		Logger: slog.New(slog.DiscardHandler),
	})
	opts.Sync = syncWrites
	s, err := pebblestore.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := storetest.NewRand(t)
	keys := make([][]byte, 12)
	for i := range keys {
		keys[i] = storetest.RandomKey(rng)
	}
	peers := make([]peer.ID, 10)
	for i := range peers {
		peers[i] = storetest.RandomPeer(rng)
	}
	type call struct {
		recs []store.ProviderRecord
		err  error
	}
	const workers, perWorker = 8, 60
	calls := make([][]call, workers)
	for w := range calls {
		for range perWorker {
			var c call
			for range 1 + rng.IntN(3) {
				c.recs = append(c.recs, store.ProviderRecord{
					Key:      keys[rng.IntN(len(keys))],
					Provider: peers[rng.IntN(len(peers))],
					Expires:  clock.Now().Add(time.Hour),
				})
			}
			calls[w] = append(calls[w], c)
		}
	}
	var wg sync.WaitGroup
	for w := range calls {
		wg.Go(func() {
			for i := range calls[w] {
				calls[w][i].err = s.AddProviders(t.Context(), calls[w][i].recs...)
			}
		})
	}
	wg.Wait()

	stored := make(map[store.Position]bool)
	var total int64
	for _, key := range keys {
		got, err := s.Providers(t.Context(), key, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > maxPerKey {
			t.Errorf("key has %d providers, limit %d", len(got), maxPerKey)
		}
		for _, r := range got {
			stored[store.Position{Key: record.KadKeyOf(r.Key), Provider: r.Provider}] = true
		}
		total += int64(len(got))
	}
	succeeded := make(map[store.Position]bool)
	failures := 0
	for _, cs := range calls {
		for _, c := range cs {
			if c.err != nil && !errors.Is(c.err, store.ErrTooManyProviders) {
				t.Fatalf("AddProviders: %v", c.err)
			}
			if c.err != nil {
				failures++
				continue
			}
			for _, r := range c.recs {
				pos := store.Position{Key: record.KadKeyOf(r.Key), Provider: r.Provider}
				succeeded[pos] = true
				if !stored[pos] {
					t.Errorf("a record of a call that succeeded is missing")
				}
			}
		}
	}
	for pos := range stored {
		if !succeeded[pos] {
			t.Errorf("a record stored by no successful call is present")
		}
	}
	if failures == 0 {
		t.Errorf("no call hit the per-key limit; the test checks nothing")
	}
	st, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.ProviderRecords != total {
		t.Errorf("Stats counts %d provider records, lookups find %d", st.ProviderRecords, total)
	}
}

// A read-only store reads, and refuses writes with ErrReadOnly.
func TestReadOnly(t *testing.T) {
	f := newFixture(t, store.Limits{})
	r := f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), time.Hour)
	f.add(r)
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(f.opts)
	opts.ReadOnly = true
	s, err := pebblestore.Open(f.dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.s = s
	f.wantProviders(r.Key, r)
	f.wantStats(1, 0)
	if err := s.AddProviders(f.ctx, f.provider(r.Key, storetest.RandomPeer(f.rng), time.Hour)); !errors.Is(err, pebblestore.ErrReadOnly) {
		t.Errorf("AddProviders: %v, want ErrReadOnly", err)
	}
	if _, err := s.Expire(f.ctx, f.clock.Now().Add(2*time.Hour), 0); !errors.Is(err, pebblestore.ErrReadOnly) {
		t.Errorf("Expire: %v, want ErrReadOnly", err)
	}
}

// Close while other goroutines call methods: each call either completes or
// returns ErrClosed, and Close returns once the calls in flight are done.
func TestCloseWhileBusy(t *testing.T) {
	f := newFixture(t, store.Limits{})
	key := storetest.RandomKey(f.rng)
	started := make(chan struct{})
	var once sync.Once
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := range 6 {
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		recs := make([]store.ProviderRecord, 100)
		for i := range recs {
			recs[i] = storetest.NewProviderRecord(rng, key, storetest.RandomPeer(rng), f.clock.Now().Add(time.Hour))
		}
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				switch w % 3 {
				case 0:
					err = f.s.AddProviders(f.ctx, recs[i%len(recs)])
					if errors.Is(err, store.ErrTooManyProviders) {
						err = nil
					}
				case 1:
					_, err = f.s.Providers(f.ctx, key, 0)
				case 2:
					_, err = f.s.Scan(f.ctx, store.ScanOptions{Kind: store.Providers})
				}
				if i == 10 {
					once.Do(func() { close(started) })
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	<-started
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("call during Close: %v, want nil or ErrClosed", err)
		}
	}
	if err := f.s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The peer index of IndexedPeers is built when a peer is added, dropped when
// it is removed, kept by writes and Expire, and serves paged scans of the
// peer in every region.
func TestPeerIndexRebuilt(t *testing.T) {
	f := newFixture(t, store.Limits{})
	p, other := storetest.RandomPeer(f.rng), storetest.RandomPeer(f.rng)
	var mine []store.ProviderRecord
	for i := range 40 {
		ttl := 3 * time.Hour
		if i%4 == 0 {
			ttl = time.Hour
		}
		r := f.provider(storetest.RandomKey(f.rng), p, ttl)
		mine = append(mine, r)
		f.add(r, f.provider(r.Key, other, 3*time.Hour), f.provider(storetest.RandomKey(f.rng), other, 3*time.Hour))
	}
	wantPeerScan := func(want []store.ProviderRecord) {
		t.Helper()
		for _, bits := range []int{0, 1, 3} {
			var got []store.ProviderRecord
			for region := (record.Region{Bits: bits}); ; {
				recs, _ := f.scanAll(store.ScanOptions{Peer: p, Region: region, Limit: 3})
				got = append(got, recs...)
				next, ok := region.Next()
				if !ok || bits == 0 {
					break
				}
				region = next
			}
			want = slices.Clone(want)
			slices.SortFunc(want, func(a, b store.ProviderRecord) int {
				ka, kb := record.KadKeyOf(a.Key), record.KadKeyOf(b.Key)
				return bytes.Compare(ka[:], kb[:])
			})
			if !slices.EqualFunc(got, want, store.ProviderRecord.Equal) {
				t.Errorf("scan of p in regions of %d bits: %d records, want %d", bits, len(got), len(want))
			}
		}
	}
	if n := pebblestore.KeysIn(f.s, 'o'); n != 0 {
		t.Errorf("%d peer index entries with no peer indexed", n)
	}
	reopen := func(mod func(*pebblestore.Options)) {
		t.Helper()
		if err := f.s.Close(); err != nil {
			t.Fatal(err)
		}
		o := testOptions(f.opts)
		mod(&o)
		s, err := pebblestore.Open(f.dir, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f.s = s
	}
	reopen(func(o *pebblestore.Options) { o.IndexedPeers = []peer.ID{p} })
	if n := pebblestore.KeysIn(f.s, 'o'); n != int64(len(mine)) {
		t.Errorf("%d peer index entries after building p's, want %d", n, len(mine))
	}
	wantPeerScan(mine)
	// Writes and Expire keep the index.
	extra := f.provider(storetest.RandomKey(f.rng), p, 3*time.Hour)
	f.add(extra)
	if err := f.s.RemoveProvider(f.ctx, mine[1].Key, p); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(10)
	var live []store.ProviderRecord
	for i, r := range mine {
		if i%4 != 0 && i != 1 {
			live = append(live, r)
		}
	}
	live = append(live, extra)
	if n := pebblestore.KeysIn(f.s, 'o'); n != int64(len(live)) {
		t.Errorf("%d peer index entries, want %d", n, len(live))
	}
	wantPeerScan(live)

	reopen(func(o *pebblestore.Options) {})
	if n := pebblestore.KeysIn(f.s, 'o'); n != 0 {
		t.Errorf("%d peer index entries after p was removed from IndexedPeers", n)
	}
	wantPeerScan(live) // by filtering
	reopen(func(o *pebblestore.Options) { o.IndexAllPeers = true })
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := pebblestore.KeysIn(f.s, 'o'); n != st.ProviderRecords {
		t.Errorf("%d peer index entries with every peer indexed, want %d", n, st.ProviderRecords)
	}
	reopen(func(o *pebblestore.Options) { o.IndexedPeers = []peer.ID{p} })
	if n := pebblestore.KeysIn(f.s, 'o'); n != int64(len(live)) {
		t.Errorf("%d peer index entries after going back to p only, want %d", n, len(live))
	}
	wantPeerScan(live)
}
