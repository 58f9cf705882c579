package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
)

// closeAndReopen closes the fixture's store and opens its directory again.
func (f *fixture) closeAndReopen() {
	f.t.Helper()
	if err := f.s.Close(); err != nil {
		f.t.Fatalf("Close: %v", err)
	}
	f.s = f.reopen()
}

func testReopenRecords(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	provs, vals := f.populate(50, 30, f.peers(3))
	removed, deleted := provs[0], vals[0]
	if err := f.s.RemoveProvider(f.ctx, removed.Key, removed.Provider); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteValue(f.ctx, deleted.Key); err != nil {
		t.Fatal(err)
	}
	provs, vals = provs[1:], vals[1:]
	refreshed := provs[len(provs)-1]
	refreshed.Expires, refreshed.Addrs = f.now().Add(time.Hour), RandomAddrs(f.rng, 2)
	f.add(refreshed)
	provs[len(provs)-1] = refreshed

	f.closeAndReopen()
	f.wantStats(int64(len(provs)), int64(len(vals)))
	f.wantScanProviders(store.ScanOptions{Limit: 7}, provs)
	f.wantScanValues(store.ScanOptions{Limit: 7}, vals)
	for _, r := range vals[:5] {
		f.wantValue(r)
	}
	f.wantNoValue(deleted.Key)
	for _, r := range []store.ProviderRecord{removed, refreshed} {
		f.wantProviders(r.Key, 0, filter(provs, func(o store.ProviderRecord) bool { return slices.Equal(o.Key, r.Key) })...)
	}
	// The reopened store takes writes, and keeps them too.
	extra, extraValue := f.newProvider(f.key(), f.peer(), time.Hour), f.newValue("/test/extra", f.peer(), time.Hour)
	f.add(extra)
	f.put(extraValue)
	f.closeAndReopen()
	f.wantStats(int64(len(provs)+1), int64(len(vals)+1))
	f.wantProviders(extra.Key, 0, extra)
	f.wantValue(extraValue)
}

func testReopenScanCursor(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	provs, vals := f.populate(60, 40, f.peers(3))
	sortProviders(provs)
	sortValues(vals)
	head := f.scanPages(store.ScanOptions{Kind: store.Providers, Limit: 8}, 3)
	vhead := f.scanPages(store.ScanOptions{Kind: store.Values, Limit: 6}, 2)
	f.closeAndReopen()
	f.wantScanProviders(store.ScanOptions{After: head.next, Limit: 5}, provs[len(head.providers):])
	f.wantScanValues(store.ScanOptions{After: vhead.next, Limit: 5}, vals[len(vhead.values):])
}

func testReopenExpiry(t *testing.T, open OpenFunc) {
	// The expiry index survives, refreshes included.
	f := newFixture(t, open, store.Limits{})
	p := f.peer()
	short, refreshed, long := f.newProvider(f.key(), p, time.Minute), f.newProvider(f.key(), p, time.Minute), f.newProvider(f.key(), p, time.Hour)
	shortValue, refreshedValue := f.newValue("/test/short", "", time.Minute), f.newValue("/test/refreshed", "", time.Minute)
	f.add(short, refreshed, long)
	f.put(shortValue, refreshedValue)
	refreshed.Expires = f.now().Add(time.Hour)
	refreshedValue = f.newValue("/test/refreshed", p, time.Hour)
	f.add(refreshed)
	f.put(refreshedValue)

	f.closeAndReopen()
	f.clock.Advance(2 * time.Minute)
	f.wantProviders(short.Key, 0)
	f.wantNoValue(shortValue.Key)
	f.wantStats(3, 2)
	f.wantExpire(f.now(), 0, 2)
	f.wantProviders(refreshed.Key, 0, refreshed)
	f.wantProviders(long.Key, 0, long)
	f.wantValue(refreshedValue)
	f.wantStats(2, 1)
}

func testReopenLimits(t *testing.T, open OpenFunc) {
	// The counts behind the limits survive.
	f := newFixture(t, open, store.Limits{MaxRecords: 4, MaxProvidersPerKey: 2, MaxRecordsPerProvider: 2})
	k1, k2 := f.key(), f.key()
	p, q := f.peer(), f.peer()
	f.add(f.newProvider(k1, p, time.Hour), f.newProvider(k1, q, time.Hour), f.newProvider(k2, p, time.Hour))
	v := f.newValue("/test/v", "", time.Hour)
	f.put(v)
	f.closeAndReopen()
	wantErr(t, "AddProviders to a full store", f.s.AddProviders(f.ctx, f.newProvider(k2, f.peer(), time.Hour)), store.ErrStoreFull)
	if err := f.s.DeleteValue(f.ctx, v.Key); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "AddProviders to a full key", f.s.AddProviders(f.ctx, f.newProvider(k1, f.peer(), time.Hour)), store.ErrTooManyProviders)
	wantErr(t, "AddProviders of a full provider", f.s.AddProviders(f.ctx, f.newProvider(f.key(), p, time.Hour)), store.ErrProviderFull)
	f.add(f.newProvider(k2, q, time.Hour), f.newProvider(k1, p, 2*time.Hour))
	f.wantStats(4, 0)
}
