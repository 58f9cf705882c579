package pebblestore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
	"github.com/kadstore/kadstore/store/storetest"
)

// Two providers of one key share a time-index entry when their expiries are
// equal: Expire removes each record at its own expiry and no earlier, and
// both when their common entry falls due.
func TestExpireProvidersSharingEntries(t *testing.T) {
	f := newFixture(t, store.Limits{})
	key := storetest.RandomKey(f.rng)
	a := storetest.RandomPeer(f.rng)
	b := storetest.RandomPeer(f.rng)
	ra, rb := f.provider(key, a, time.Hour), f.provider(key, b, 3*time.Hour)
	f.add(ra, rb)
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(1)
	f.wantProviders(key, rb)
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(1)
	f.wantStats(0, 0)

	// Equal expiries: one entry for both records.
	ra, rb = f.provider(key, a, time.Hour), f.provider(key, b, time.Hour)
	f.add(ra, rb)
	if n := pebblestore.KeysIn(f.s, 'e'); n != 1 {
		t.Errorf("%d time-index entries for two records of one key and expiry, want 1", n)
	}
	// Refreshing one must not lose the other's expiry.
	rb2 := f.provider(key, b, 5*time.Hour)
	f.add(rb2)
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(1)
	f.wantProviders(key, rb2)
	f.clock.Advance(4 * time.Hour)
	f.wantExpire(1)
	f.wantStats(0, 0)
	f.wantNoKeys("peo") // everything expired
}

// A refresh leaves the entry of the old expiry, which Expire drops without
// removing the record; a removal leaves its entry, which Expire drops
// without counting a removal.
func TestExpireStaleEntries(t *testing.T) {
	f := newFixture(t, store.Limits{})
	key, p := storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng)
	gone := f.provider(storetest.RandomKey(f.rng), p, time.Hour)
	f.add(f.provider(key, p, time.Hour), gone)
	fresh := f.provider(key, p, 3*time.Hour)
	f.add(fresh)
	if err := f.s.RemoveProvider(f.ctx, gone.Key, gone.Provider); err != nil {
		t.Fatal(err)
	}
	if n := pebblestore.KeysIn(f.s, 'e'); n != 3 {
		t.Errorf("%d time-index entries, want 3 (one stale, one of a removed record)", n)
	}
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(0)
	f.wantProviders(key, fresh)
	if n := pebblestore.KeysIn(f.s, 'e'); n != 1 {
		t.Errorf("%d time-index entries after the stale ones fell due, want 1", n)
	}
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(1)
	f.wantStats(0, 0)
}

// A store of layout version 1 (the previous release) is converted at Open:
// its records are kept and expire when they should.
func TestOpenConvertsLayoutV1(t *testing.T) {
	f := newFixture(t, store.Limits{})
	var short, long []store.ProviderRecord
	for range 50 {
		short = append(short, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), time.Hour))
		long = append(long, f.provider(storetest.RandomKey(f.rng), storetest.RandomPeer(f.rng), 3*time.Hour))
	}
	f.add(short...)
	f.add(long...)
	val := storetest.NewValueRecord(f.rng, []byte("/test/v1"), storetest.RandomPeer(f.rng), f.clock.Now(), f.clock.Now().Add(time.Hour))
	if err := f.s.PutValue(f.ctx, val); err != nil {
		t.Fatal(err)
	}
	if err := pebblestore.DowngradeToV1(f.s); err != nil {
		t.Fatal(err)
	}
	f.reopen()
	if n := pebblestore.KeysIn(f.s, 'g'); n != 0 {
		t.Errorf("%d version 1 guard keys left", n)
	}
	if n := pebblestore.KeysIn(f.s, 'e'); n != 101 {
		t.Errorf("%d time-index entries after the conversion, want 101", n)
	}
	f.wantStats(100, 1)
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(51)
	f.wantStats(50, 0)
	for _, r := range long {
		f.wantProviders(r.Key, r)
	}
	f.reopen() // converted once: the version is now 2
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(50)
	f.wantStats(0, 0)
}

// Expire's limit holds when several records share an entry: the entry stays
// until every record it names is gone.
func TestExpireLimitWithSharedEntry(t *testing.T) {
	f := newFixture(t, store.Limits{})
	key := storetest.RandomKey(f.rng)
	for range 3 {
		f.add(f.provider(key, storetest.RandomPeer(f.rng), time.Hour))
	}
	if n := pebblestore.KeysIn(f.s, 'e'); n != 1 {
		t.Fatalf("%d time-index entries for three records of one key and expiry, want 1", n)
	}
	f.clock.Advance(2 * time.Hour)
	for i := range 3 {
		n, err := f.s.Expire(f.ctx, f.clock.Now(), 1)
		if err != nil || n != 1 {
			t.Fatalf("Expire #%d with limit 1: %d, %v; want 1", i, n, err)
		}
		f.wantStats(int64(2-i), 0)
	}
	f.wantExpire(0)
	if n := pebblestore.KeysIn(f.s, 'e'); n != 0 {
		t.Errorf("%d time-index entries left", n)
	}
}

// The per-provider counts kept in memory follow what Expire and
// RemoveProvider remove, and agree with the stored counts after a reopen.
func TestProviderCountsFollowRemovals(t *testing.T) {
	f := newFixture(t, store.Limits{MaxRecordsPerProvider: 3})
	p := storetest.RandomPeer(f.rng)
	addFor := func(ttl time.Duration) (store.ProviderRecord, error) {
		r := f.provider(storetest.RandomKey(f.rng), p, ttl)
		return r, f.s.AddProviders(f.ctx, r)
	}
	if _, err := addFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	keep, err := addFor(3 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := addFor(3 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := addFor(3 * time.Hour); !errors.Is(err, store.ErrProviderFull) {
		t.Fatalf("fourth record: %v, want ErrProviderFull", err)
	}
	f.clock.Advance(2 * time.Hour)
	f.wantExpire(1)
	if err := f.s.RemoveProvider(f.ctx, gone.Key, p); err != nil {
		t.Fatal(err)
	}
	for range 2 { // room for two again
		if _, err := addFor(3 * time.Hour); err != nil {
			t.Fatalf("after the removals: %v", err)
		}
	}
	if _, err := addFor(3 * time.Hour); !errors.Is(err, store.ErrProviderFull) {
		t.Fatalf("past the limit again: %v, want ErrProviderFull", err)
	}
	f.reopen()
	if _, err := addFor(3 * time.Hour); !errors.Is(err, store.ErrProviderFull) {
		t.Fatalf("after reopening: %v, want ErrProviderFull", err)
	}
	f.add(keep) // a refresh never fails on a count limit
}
