package storetest

import (
	"testing"
	"time"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

func testExpiredHidden(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	k, k2 := f.key(), f.key()
	pa, pb := f.peer(), f.peer()
	shortV, longV := f.newValue("/test/short", pa, 10*time.Second), f.newValue("/test/long", "", time.Hour)
	a, b, c := f.newProvider(k, pa, 10*time.Second), f.newProvider(k, pb, time.Hour), f.newProvider(k2, pa, 10*time.Second)
	f.add(a, b, c)
	f.put(shortV, longV)

	f.clock.Advance(10*time.Second - time.Millisecond)
	f.wantValue(shortV)
	f.wantProviders(k, 0, a, b)
	f.wantProviders(k2, 0, c)
	f.wantScanProviders(store.ScanOptions{Peer: pa}, []store.ProviderRecord{a, c})

	// At its expiry a record is expired, whether or not Expire has run.
	f.clock.Advance(time.Millisecond)
	f.wantNoValue(shortV.Key)
	f.wantValue(longV)
	f.wantProviders(k, 0, b)
	f.wantProviders(k2, 0)
	f.wantScanProviders(store.ScanOptions{Limit: 1}, []store.ProviderRecord{b})
	f.wantScanValues(store.ScanOptions{Limit: 1}, []store.ValueRecord{longV})
	f.wantScanProviders(store.ScanOptions{Peer: pa}, nil)
	f.wantScanValues(store.ScanOptions{Peer: pa}, nil)
	region := record.RegionOf(record.KadKeyOf(k2), 8)
	f.wantScanProviders(store.ScanOptions{Region: region}, filter([]store.ProviderRecord{b}, func(r store.ProviderRecord) bool {
		return region.Contains(r.KadKey())
	}))
	// Stats count them until Expire removes them.
	f.wantStats(3, 2)
}

func testExpire(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	keys := [][]byte{f.key(), f.key(), f.key()}
	var live []store.ProviderRecord
	var batch []store.ProviderRecord
	for i := range 10 {
		r := f.newProvider(keys[i%3], f.peer(), time.Hour)
		if i%2 == 0 {
			r.Expires = f.now().Add(time.Minute)
		} else {
			live = append(live, r)
		}
		batch = append(batch, r)
	}
	f.add(batch...)
	vals := []store.ValueRecord{
		f.newValue("/test/a", "", time.Minute), f.newValue("/test/b", f.peer(), time.Minute), f.newValue("/test/c", "", time.Minute),
		f.newValue("/test/d", "", time.Hour), f.newValue("/test/e", f.peer(), time.Hour),
	}
	f.put(vals...)
	f.wantExpire(f.now(), 0, 0)
	f.wantStats(10, 5)

	f.clock.Advance(time.Minute)
	f.wantExpire(f.now(), 0, 8)
	f.wantStats(5, 2)
	f.wantScanProviders(store.ScanOptions{}, live)
	f.wantScanValues(store.ScanOptions{}, vals[3:])
	for _, k := range keys {
		f.wantProviders(k, 0, filter(live, func(r store.ProviderRecord) bool { return string(r.Key) == string(k) })...)
	}
	f.wantExpire(f.now(), 0, 0)
	f.wantStats(5, 2)
}

func testExpireLimit(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	var live, batch []store.ProviderRecord
	for i := range 15 {
		r := f.newProvider(f.key(), f.peer(), time.Minute)
		if i >= 10 {
			r.Expires = f.now().Add(time.Hour)
			live = append(live, r)
		}
		batch = append(batch, r)
	}
	f.add(batch...)
	var liveValues []store.ValueRecord
	for i := range 6 {
		r := f.newValue("/test/"+string(rune('a'+i)), "", time.Minute)
		if i >= 4 {
			r.Expires = f.now().Add(time.Hour)
			liveValues = append(liveValues, r)
		}
		f.put(r)
	}
	f.clock.Advance(time.Minute)
	stored := int64(21)
	for _, want := range []int{4, 4, 4, 1, 1, 0} {
		limit := 4
		if want == 1 {
			limit = 1
		}
		f.wantExpire(f.now(), limit, want)
		stored -= int64(want)
		if st := f.stats(); st.ProviderRecords+st.ValueRecords != stored {
			t.Errorf("after Expire: Stats count %d+%d records, want %d", st.ProviderRecords, st.ValueRecords, stored)
		}
	}
	f.wantStats(5, 2)
	f.wantScanProviders(store.ScanOptions{}, live)
	f.wantScanValues(store.ScanOptions{}, liveValues)
}

func testExpireNowArgument(t *testing.T, open OpenFunc) {
	// Expire judges by its argument, not by the store's clock: now bounds
	// both what expired and what lies implausibly far ahead (2×MaxTTL).
	f := newFixture(t, open, store.Limits{MaxTTL: time.Hour})
	k := f.key()
	soon, later := f.newProvider(k, f.peer(), 10*time.Minute), f.newProvider(k, f.peer(), time.Hour)
	soonV, laterV := f.newValue("/test/soon", "", 10*time.Minute), f.newValue("/test/later", "", time.Hour)
	f.add(soon, later)
	f.put(soonV, laterV)
	t0 := f.now()
	f.wantExpire(t0.Add(10*time.Minute-time.Millisecond), 0, 0)
	f.wantExpire(t0.Add(10*time.Minute), 0, 2)
	f.wantStats(1, 1)
	f.wantProviders(k, 0, later)
	f.wantValue(laterV)
	f.wantNoValue(soonV.Key)

	// later expires at t0+1h: exactly 2×MaxTTL after t0-1h, which is allowed.
	f.wantExpire(t0.Add(-time.Hour), 0, 0)
	f.wantExpire(t0.Add(-time.Hour-time.Millisecond), 0, 2)
	f.wantStats(0, 0)
}

func testRefreshExpiry(t *testing.T, open OpenFunc) {
	// A refresh must replace the record's entry in whatever index Expire
	// uses, or Expire would later delete the fresh record (when extended), or
	// count a record twice or remove a later one (when shortened).
	t.Run("ProviderExtended", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{})
		k, p := f.key(), f.peer()
		r := f.newProvider(k, p, time.Minute)
		f.add(r)
		r.Expires, r.Addrs = f.now().Add(time.Hour), RandomAddrs(f.rng, 2)
		f.add(r)
		f.clock.Advance(2 * time.Minute) // past the first expiry, before the second
		f.wantExpire(f.now(), 0, 0)
		f.wantProviders(k, 0, r)
		f.wantScanProviders(store.ScanOptions{}, []store.ProviderRecord{r})
		f.wantStats(1, 0)
		f.clock.Set(r.Expires)
		f.wantProviders(k, 0)
		f.wantExpire(f.now(), 0, 1)
		f.wantStats(0, 0)
	})
	t.Run("ProviderShortened", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{})
		k, p := f.key(), f.peer()
		r := f.newProvider(k, p, time.Hour)
		f.add(r)
		oldExpiry := r.Expires
		r.Expires = f.now().Add(time.Minute)
		f.add(r)
		f.clock.Advance(time.Minute)
		f.wantProviders(k, 0)
		f.wantExpire(f.now(), 0, 1)
		f.wantStats(0, 0)
		// A new record at the same place outlives the first one's old expiry.
		fresh := f.newProvider(k, p, 2*time.Hour)
		f.add(fresh)
		f.clock.Set(oldExpiry.Add(time.Minute))
		f.wantExpire(f.now(), 0, 0)
		f.wantProviders(k, 0, fresh)
		f.wantStats(1, 0)
	})
	t.Run("ValueExtended", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{})
		r := f.newValue("/test/v", f.peer(), time.Minute)
		f.put(r)
		r = f.newValue("/test/v", "", time.Hour)
		f.put(r)
		f.clock.Advance(2 * time.Minute)
		f.wantExpire(f.now(), 0, 0)
		f.wantValue(r)
		f.wantStats(0, 1)
		f.clock.Set(r.Expires)
		f.wantNoValue(r.Key)
		f.wantExpire(f.now(), 0, 1)
		f.wantStats(0, 0)
	})
	t.Run("ValueShortened", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{})
		r := f.newValue("/test/v", "", time.Hour)
		f.put(r)
		oldExpiry := r.Expires
		r = f.newValue("/test/v", f.peer(), time.Minute)
		f.put(r)
		f.clock.Advance(time.Minute)
		f.wantNoValue(r.Key)
		f.wantExpire(f.now(), 0, 1)
		f.wantStats(0, 0)
		fresh := f.newValue("/test/v", "", 2*time.Hour)
		f.put(fresh)
		f.clock.Set(oldExpiry.Add(time.Minute))
		f.wantExpire(f.now(), 0, 0)
		f.wantValue(fresh)
		f.wantStats(0, 1)
	})
}

func testClockJumpBack(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{MaxTTL: time.Hour})
	k, p := f.key(), f.peer()
	far, farV := f.newProvider(k, p, time.Hour), f.newValue("/test/far", p, time.Hour)
	near, nearV := f.newProvider(f.key(), p, 30*time.Minute), f.newValue("/test/near", "", 30*time.Minute)
	f.add(far, near)
	f.put(farV, nearV)

	// The clock jumps back by MaxTTL: far now expires 2×MaxTTL ahead, the
	// most a record may, so it is still served and Expire keeps it.
	f.clock.Advance(-time.Hour)
	f.wantProviders(k, 0, far)
	f.wantValue(farV)
	f.wantExpire(f.now(), 0, 0)

	// One millisecond further back it can only come from a clock jump: hidden...
	f.clock.Advance(-time.Millisecond)
	f.wantProviders(k, 0)
	f.wantNoValue(farV.Key)
	f.wantScanProviders(store.ScanOptions{}, []store.ProviderRecord{near})
	f.wantScanValues(store.ScanOptions{}, []store.ValueRecord{nearV})
	f.wantScanProviders(store.ScanOptions{Peer: p}, []store.ProviderRecord{near})
	f.wantScanValues(store.ScanOptions{Peer: p}, nil)
	f.wantStats(2, 2)
	// ...and removed by Expire.
	f.wantExpire(f.now(), 0, 2)
	f.wantStats(1, 1)

	// When the clock is right again they stay gone.
	f.clock.Set(Start)
	f.wantProviders(k, 0)
	f.wantNoValue(farV.Key)
	f.wantProviders(near.Key, 0, near)
	f.wantValue(nearV)
}
