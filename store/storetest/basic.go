package storetest

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/store"
)

func testValueRoundTrip(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	pub, other := f.peer(), f.peer()
	now := f.now()
	recs := []store.ValueRecord{
		{Key: []byte("/test/published"), Value: []byte("hello"), Publisher: pub, Received: now.Add(-time.Second), Expires: now.Add(time.Hour)},
		{Key: []byte("/test/anonymous"), Value: []byte("world"), Received: now, Expires: now.Add(2 * time.Hour)},
		{Key: []byte("/test/empty-value"), Received: now, Expires: now.Add(time.Minute)},
		{Key: []byte{0, 0xff, '/', 0}, Value: bytes.Repeat([]byte{0}, 1000), Publisher: other, Received: now, Expires: now.Add(time.Minute)},
	}
	want := make([]store.ValueRecord, len(recs))
	for i, r := range recs {
		want[i] = r.Clone()
	}
	f.put(recs...)
	recs[0].Value[0] = 'J' // the store keeps its own copy
	for _, r := range want {
		f.wantValue(r)
	}
	got := f.get(want[0].Key)
	got.Value[0] = 'Y' // and hands out copies
	f.wantValue(want[0])
	f.wantNoValue([]byte("/test/missing"))
	f.wantStats(0, 4)

	// Replacing changes every field, including the publisher a scan filters on.
	repl := store.ValueRecord{Key: want[0].Key, Value: []byte("replaced"), Publisher: other, Received: now, Expires: now.Add(30 * time.Minute)}
	f.put(repl)
	f.wantValue(repl)
	f.wantStats(0, 4)
	f.wantScanValues(store.ScanOptions{Peer: pub}, nil)
	f.wantScanValues(store.ScanOptions{Peer: other}, []store.ValueRecord{repl, want[3]})
	f.wantScanValues(store.ScanOptions{}, []store.ValueRecord{repl, want[1], want[2], want[3]})

	// Dropping the publisher.
	anon := repl
	anon.Publisher = ""
	f.put(anon)
	f.wantValue(anon)
	f.wantScanValues(store.ScanOptions{Peer: other}, []store.ValueRecord{want[3]})

	for range 2 { // deleting a missing record is not an error
		if err := f.s.DeleteValue(f.ctx, want[1].Key); err != nil {
			t.Fatalf("DeleteValue: %v", err)
		}
		f.wantNoValue(want[1].Key)
	}
	f.wantStats(0, 3)
	f.wantScanValues(store.ScanOptions{}, []store.ValueRecord{anon, want[2], want[3]})
}

func testProviderRoundTrip(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	key, other := f.key(), f.key()
	now := f.now()
	var recs []store.ProviderRecord
	for i := range 3 {
		recs = append(recs, store.ProviderRecord{
			Key: slices.Clone(key), Provider: f.peer(), Addrs: RandomAddrs(f.rng, 2*i),
			Expires: now.Add(time.Duration(i+1) * time.Hour),
		})
	}
	elsewhere := store.ProviderRecord{Key: other, Provider: recs[0].Provider, Addrs: RandomAddrs(f.rng, 1), Expires: now.Add(time.Hour)}
	want := []store.ProviderRecord{recs[0].Clone(), recs[1].Clone(), recs[2].Clone()}
	f.add(recs[0])
	f.add(recs[1], recs[2], elsewhere)
	// The store keeps its own copies.
	recs[0].Key[0] ^= 0xff
	recs[2].Addrs[0] = ma.StringCast("/ip4/127.0.0.1/tcp/1")
	f.wantProviders(key, 0, want...)
	f.wantProviders(other, 0, elsewhere)
	f.wantProviders(f.key(), 0)

	sorted := slices.Clone(want)
	sortProviders(sorted)
	f.wantProviders(key, 2, sorted[:2]...)
	f.wantProviders(key, 1, sorted[0])

	// And hands out copies.
	got, err := f.s.Providers(f.ctx, key, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("Providers: %d records, %v", len(got), err)
	}
	for _, r := range got {
		r.Key[0] ^= 0xff
		if len(r.Addrs) > 0 {
			r.Addrs[0] = ma.StringCast("/ip4/127.0.0.1/tcp/2")
		}
	}
	f.wantProviders(key, 0, want...)
	f.wantStats(4, 0)

	// A refresh replaces addresses and expiry.
	refresh := want[1]
	refresh.Addrs, refresh.Expires = RandomAddrs(f.rng, 3), now.Add(3*time.Hour)
	noAddrs := want[2]
	noAddrs.Addrs, noAddrs.Expires = nil, now.Add(time.Minute)
	f.add(refresh, noAddrs)
	f.wantProviders(key, 0, want[0], refresh, noAddrs)
	f.wantStats(4, 0)

	for range 2 { // removing a missing record is not an error
		if err := f.s.RemoveProvider(f.ctx, key, want[0].Provider); err != nil {
			t.Fatalf("RemoveProvider: %v", err)
		}
		f.wantProviders(key, 0, refresh, noAddrs)
	}
	if err := f.s.RemoveProvider(f.ctx, key, f.peer()); err != nil {
		t.Fatalf("RemoveProvider of an unknown provider: %v", err)
	}
	if err := f.s.RemoveProvider(f.ctx, f.key(), want[1].Provider); err != nil {
		t.Fatalf("RemoveProvider of an unknown key: %v", err)
	}
	f.wantProviders(other, 0, elsewhere)
	f.wantStats(3, 0)
	f.wantScanProviders(store.ScanOptions{}, []store.ProviderRecord{refresh, noAddrs, elsewhere})
}

func testProvidersLimit(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{MaxProvidersPerKey: 5})
	key := f.key()
	var recs []store.ProviderRecord
	for range 5 {
		recs = append(recs, f.newProvider(key, f.peer(), time.Hour))
	}
	sortProviders(recs)
	// The first two in provider order expire first.
	recs[0].Expires = f.now().Add(time.Minute)
	recs[1].Expires = f.now().Add(time.Minute)
	f.add(recs...)
	for _, limit := range []int{-1, 0, 5, 6, 1000} {
		f.wantProviders(key, limit, recs...)
	}
	f.wantProviders(key, 3, recs[:3]...)
	f.wantProviders(key, 1, recs[0])

	f.clock.Advance(time.Minute)
	// The limit counts live records: expired ones neither appear nor use it.
	f.wantProviders(key, 2, recs[2], recs[3])
	f.wantProviders(key, 0, recs[2:]...)
}

func testStats(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	f.wantStats(0, 0)
	k1, k2 := f.key(), f.key()
	var provs []store.ProviderRecord
	for range 3 {
		provs = append(provs, f.newProvider(k1, f.peer(), time.Hour))
	}
	provs = append(provs, f.newProvider(k2, provs[0].Provider, time.Hour), f.newProvider(k2, provs[1].Provider, time.Hour))
	f.add(provs...)
	vals := []store.ValueRecord{
		f.newValue("/test/a", "", time.Hour), f.newValue("/test/b", provs[0].Provider, time.Hour),
		f.newValue("/test/c", "", time.Hour), f.newValue("/test/d", "", time.Hour),
	}
	f.put(vals...)
	f.wantStats(5, 4)

	f.add(f.newProvider(k1, provs[2].Provider, 2*time.Hour))
	f.put(f.newValue("/test/b", "", 2*time.Hour))
	f.wantStats(5, 4)

	if err := f.s.RemoveProvider(f.ctx, k2, provs[0].Provider); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteValue(f.ctx, []byte("/test/c")); err != nil {
		t.Fatal(err)
	}
	f.wantStats(4, 3)
	if err := f.s.RemoveProvider(f.ctx, k2, provs[0].Provider); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteValue(f.ctx, []byte("/test/c")); err != nil {
		t.Fatal(err)
	}
	f.wantStats(4, 3)
}

// inputLimits are small limits for the input tests.
var inputLimits = store.Limits{MaxKeySize: 64, MaxValueSize: 128, MaxAddrs: 3, MaxTTL: time.Hour}

func testInputErrors(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, inputLimits)
	now := f.now()
	p := f.peer()
	good := store.ProviderRecord{Key: f.key(), Provider: p, Addrs: RandomAddrs(f.rng, 1), Expires: now.Add(time.Minute)}
	goodValue := store.ValueRecord{Key: []byte("/test/v"), Value: []byte("v"), Publisher: p, Received: now, Expires: now.Add(time.Minute)}
	big := bytes.Repeat([]byte("k"), 65)
	truncated := peer.ID(p[:len(p)-1])

	prov := func(mod func(r *store.ProviderRecord)) func(ctx context.Context, s store.Store) error {
		r := good.Clone()
		mod(&r)
		return func(ctx context.Context, s store.Store) error { return s.AddProviders(ctx, r) }
	}
	val := func(mod func(r *store.ValueRecord)) func(ctx context.Context, s store.Store) error {
		r := goodValue.Clone()
		mod(&r)
		return func(ctx context.Context, s store.Store) error { return s.PutValue(ctx, r) }
	}
	get := func(key []byte) func(ctx context.Context, s store.Store) error {
		return func(ctx context.Context, s store.Store) error { _, err := s.GetValue(ctx, key); return err }
	}
	del := func(key []byte) func(ctx context.Context, s store.Store) error {
		return func(ctx context.Context, s store.Store) error { return s.DeleteValue(ctx, key) }
	}
	providers := func(key []byte) func(ctx context.Context, s store.Store) error {
		return func(ctx context.Context, s store.Store) error { _, err := s.Providers(ctx, key, 0); return err }
	}
	remove := func(key []byte, p peer.ID) func(ctx context.Context, s store.Store) error {
		return func(ctx context.Context, s store.Store) error { return s.RemoveProvider(ctx, key, p) }
	}
	cases := []struct {
		name string
		want error // nil: any error
		call func(ctx context.Context, s store.Store) error
	}{
		{"PutValue empty key", store.ErrEmptyKey, val(func(r *store.ValueRecord) { r.Key = nil })},
		{"PutValue key too large", store.ErrKeyTooLarge, val(func(r *store.ValueRecord) { r.Key = big })},
		{"PutValue value too large", store.ErrValueTooLarge, val(func(r *store.ValueRecord) { r.Value = make([]byte, 129) })},
		{"PutValue invalid publisher", store.ErrInvalidPeer, val(func(r *store.ValueRecord) { r.Publisher = "not a peer" })},
		{"PutValue truncated publisher", store.ErrInvalidPeer, val(func(r *store.ValueRecord) { r.Publisher = truncated })},
		{"PutValue expires now", store.ErrExpired, val(func(r *store.ValueRecord) { r.Expires = now })},
		{"PutValue expired", store.ErrExpired, val(func(r *store.ValueRecord) { r.Expires = now.Add(-time.Hour) })},
		{"PutValue zero expiry", store.ErrExpired, val(func(r *store.ValueRecord) { r.Expires = time.Time{} })},
		{"PutValue TTL too long", store.ErrTTLTooLong, val(func(r *store.ValueRecord) { r.Expires = now.Add(time.Hour + time.Millisecond) })},
		{"AddProviders empty key", store.ErrEmptyKey, prov(func(r *store.ProviderRecord) { r.Key = []byte{} })},
		{"AddProviders key too large", store.ErrKeyTooLarge, prov(func(r *store.ProviderRecord) { r.Key = big })},
		{"AddProviders empty provider", store.ErrInvalidPeer, prov(func(r *store.ProviderRecord) { r.Provider = "" })},
		{"AddProviders invalid provider", store.ErrInvalidPeer, prov(func(r *store.ProviderRecord) { r.Provider = "not a peer" })},
		{"AddProviders truncated provider", store.ErrInvalidPeer, prov(func(r *store.ProviderRecord) { r.Provider = truncated })},
		{"AddProviders too many addresses", store.ErrTooManyAddrs, prov(func(r *store.ProviderRecord) { r.Addrs = RandomAddrs(f.rng, 4) })},
		{"AddProviders nil address", nil, prov(func(r *store.ProviderRecord) { r.Addrs = []ma.Multiaddr{nil} })},
		{"AddProviders expires now", store.ErrExpired, prov(func(r *store.ProviderRecord) { r.Expires = now })},
		{"AddProviders expired", store.ErrExpired, prov(func(r *store.ProviderRecord) { r.Expires = now.Add(-time.Millisecond) })},
		{"AddProviders TTL too long", store.ErrTTLTooLong, prov(func(r *store.ProviderRecord) { r.Expires = now.Add(2 * time.Hour) })},
		{"GetValue empty key", store.ErrEmptyKey, get(nil)},
		{"GetValue key too large", store.ErrKeyTooLarge, get(big)},
		{"DeleteValue empty key", store.ErrEmptyKey, del(nil)},
		{"DeleteValue key too large", store.ErrKeyTooLarge, del(big)},
		{"Providers empty key", store.ErrEmptyKey, providers(nil)},
		{"Providers key too large", store.ErrKeyTooLarge, providers(big)},
		{"RemoveProvider empty key", store.ErrEmptyKey, remove(nil, p)},
		{"RemoveProvider key too large", store.ErrKeyTooLarge, remove(big, p)},
		{"RemoveProvider empty peer", store.ErrInvalidPeer, remove(good.Key, "")},
		{"RemoveProvider invalid peer", store.ErrInvalidPeer, remove(good.Key, "not a peer")},
	}
	for _, c := range cases {
		err := c.call(f.ctx, f.s)
		switch {
		case c.want == nil && err == nil:
			t.Errorf("%s: no error", c.name)
		case c.want != nil:
			wantErr(t, c.name, err, c.want)
		}
	}
	// Nothing was stored, and the good records are accepted.
	f.wantStats(0, 0)
	f.wantNoValue(goodValue.Key)
	f.wantProviders(good.Key, 0)
	f.add(good)
	f.put(goodValue)
	f.wantProviders(good.Key, 0, good)
	f.wantValue(goodValue)
}

func testInputLimitsAccepted(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, inputLimits)
	now := f.now()
	longKey := bytes.Repeat([]byte("k"), 64)
	p := f.peer()
	recs := []store.ProviderRecord{
		{Key: longKey, Provider: p, Addrs: RandomAddrs(f.rng, 3), Expires: now.Add(time.Hour)},
		{Key: []byte{0}, Provider: p, Expires: now.Add(time.Millisecond)},
	}
	vals := []store.ValueRecord{
		{Key: longKey, Value: make([]byte, 128), Publisher: p, Received: now, Expires: now.Add(time.Hour)},
		{Key: []byte{0}, Received: now, Expires: now.Add(time.Millisecond)},
	}
	f.add(recs...)
	f.put(vals...)
	for _, r := range recs {
		f.wantProviders(r.Key, 0, r)
	}
	for _, r := range vals {
		f.wantValue(r)
	}
	f.wantNoValue(bytes.Repeat([]byte("m"), 64))
	f.wantStats(2, 2)
}

func testTooManyProviders(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{MaxProvidersPerKey: 3})
	key, other := f.key(), f.key()
	var recs []store.ProviderRecord
	for range 3 {
		recs = append(recs, f.newProvider(key, f.peer(), time.Hour))
	}
	f.add(recs...)
	extra := f.newProvider(key, f.peer(), time.Hour)
	wantErr(t, "AddProviders of a 4th provider", f.s.AddProviders(f.ctx, extra), store.ErrTooManyProviders)
	f.wantProviders(key, 0, recs...)

	// Refreshing at the cap succeeds; a batch that adds a provider fails whole.
	recs[1].Expires, recs[1].Addrs = f.now().Add(2*time.Hour), RandomAddrs(f.rng, 2)
	f.add(recs[1])
	refresh := recs[0]
	refresh.Expires = f.now().Add(3 * time.Hour)
	wantErr(t, "AddProviders of a refresh and a 4th provider", f.s.AddProviders(f.ctx, refresh, extra), store.ErrTooManyProviders)
	f.wantProviders(key, 0, recs...)

	// The cap is per key.
	f.add(f.newProvider(other, extra.Provider, time.Hour))
	// Removing a provider frees its place.
	if err := f.s.RemoveProvider(f.ctx, key, recs[2].Provider); err != nil {
		t.Fatal(err)
	}
	f.add(extra)
	recs[2] = extra
	f.wantProviders(key, 0, recs...)

	// An expired provider keeps its place until Expire removes it, and
	// rewriting it is a refresh.
	recs[0].Expires = f.now().Add(time.Minute)
	f.add(recs[0])
	f.clock.Advance(time.Minute)
	newcomer := f.newProvider(key, f.peer(), time.Hour)
	wantErr(t, "AddProviders while an expired provider holds a place", f.s.AddProviders(f.ctx, newcomer), store.ErrTooManyProviders)
	f.wantProviders(key, 0, recs[1:]...)
	recs[0].Expires = f.now().Add(time.Minute)
	f.add(recs[0])
	f.wantProviders(key, 0, recs...)
	f.clock.Advance(time.Minute)
	f.wantExpire(f.now(), 0, 1)
	f.add(newcomer)
	f.wantProviders(key, 0, recs[1], recs[2], newcomer)
	f.wantStats(4, 0)
}

func testStoreFull(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{MaxRecords: 4})
	k1, k2 := f.key(), f.key()
	p1, p2 := f.peer(), f.peer()
	a, b := f.newProvider(k1, p1, time.Hour), f.newProvider(k1, p2, time.Hour)
	v1, v2 := f.newValue("/test/1", "", time.Hour), f.newValue("/test/2", p1, time.Hour)
	f.add(a, b)
	f.put(v1, v2)
	f.wantStats(2, 2)
	wantErr(t, "AddProviders of a new key", f.s.AddProviders(f.ctx, f.newProvider(k2, p1, time.Hour)), store.ErrStoreFull)
	wantErr(t, "AddProviders of a new provider", f.s.AddProviders(f.ctx, f.newProvider(k1, f.peer(), time.Hour)), store.ErrStoreFull)
	wantErr(t, "PutValue of a new key", f.s.PutValue(f.ctx, f.newValue("/test/3", "", time.Hour)), store.ErrStoreFull)
	f.wantStats(2, 2)
	f.wantNoValue([]byte("/test/3"))
	f.wantProviders(k2, 0)
	f.wantProviders(k1, 0, a, b)

	// Refreshing and replacing still succeed when full.
	a.Expires = f.now().Add(2 * time.Hour)
	f.add(a)
	v1 = f.newValue("/test/1", p2, 2*time.Hour)
	f.put(v1)
	f.wantStats(2, 2)
	f.wantProviders(k1, 0, a, b)
	f.wantValue(v1)

	// Deleting a record of either kind frees a place for either kind.
	if err := f.s.DeleteValue(f.ctx, v2.Key); err != nil {
		t.Fatal(err)
	}
	c := f.newProvider(k2, p1, time.Hour)
	f.add(c)
	f.wantStats(3, 1)

	// An expired record keeps its place until Expire removes it.
	v1 = f.newValue("/test/1", "", time.Minute)
	f.put(v1)
	f.clock.Advance(time.Minute)
	v4 := f.newValue("/test/4", "", time.Hour)
	wantErr(t, "PutValue while an expired record holds a place", f.s.PutValue(f.ctx, v4), store.ErrStoreFull)
	f.wantExpire(f.now(), 0, 1)
	f.put(v4)
	f.wantStats(3, 1)
	f.wantValue(v4)
}

func testProviderFull(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{MaxRecordsPerProvider: 2})
	p, q := f.peer(), f.peer()
	k := [4][]byte{f.key(), f.key(), f.key(), f.key()}
	r1, r2 := f.newProvider(k[0], p, time.Hour), f.newProvider(k[1], p, time.Hour)
	f.add(r1, r2)
	wantErr(t, "AddProviders of a 3rd record of a provider", f.s.AddProviders(f.ctx, f.newProvider(k[2], p, time.Hour)), store.ErrProviderFull)
	f.wantProviders(k[2], 0)
	f.add(f.newProvider(k[2], q, time.Hour)) // the cap is per provider

	r1.Expires = f.now().Add(2 * time.Hour) // a refresh at the cap succeeds
	f.add(r1)
	refresh := r2
	refresh.Expires = f.now().Add(3 * time.Hour)
	wantErr(t, "AddProviders of a refresh and a new record", f.s.AddProviders(f.ctx, refresh, f.newProvider(k[3], p, time.Hour)), store.ErrProviderFull)
	f.wantProviders(k[1], 0, r2)
	f.wantProviders(k[3], 0)

	if err := f.s.RemoveProvider(f.ctx, k[0], p); err != nil {
		t.Fatal(err)
	}
	r3 := f.newProvider(k[2], p, time.Hour)
	f.add(r3)
	f.wantScanProviders(store.ScanOptions{Peer: p}, []store.ProviderRecord{r2, r3})
	f.wantStats(3, 0)

	// Value records do not count against their publisher.
	f.put(f.newValue("/test/a", p, time.Hour), f.newValue("/test/b", p, time.Hour), f.newValue("/test/c", p, time.Hour))
	f.wantStats(3, 3)
}

func testBatchAtomic(t *testing.T, open OpenFunc) {
	t.Run("BadRecord", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{})
		stored := f.newProvider(f.key(), f.peer(), time.Hour)
		f.add(stored)
		refresh := stored
		refresh.Expires, refresh.Addrs = f.now().Add(2*time.Hour), RandomAddrs(f.rng, 2)
		good1, good2 := f.newProvider(f.key(), f.peer(), time.Hour), f.newProvider(f.key(), f.peer(), time.Hour)
		emptyKey := f.newProvider(nil, f.peer(), time.Hour)
		expired := f.newProvider(f.key(), f.peer(), time.Hour)
		expired.Expires = f.now()
		for _, c := range []struct {
			name  string
			batch []store.ProviderRecord
			want  error
		}{
			{"bad last", []store.ProviderRecord{good1, refresh, good2, emptyKey}, store.ErrEmptyKey},
			{"bad first", []store.ProviderRecord{emptyKey, good1, refresh, good2}, store.ErrEmptyKey},
			{"bad middle", []store.ProviderRecord{good1, expired, refresh, good2}, store.ErrExpired},
		} {
			wantErr(t, "AddProviders, "+c.name, f.s.AddProviders(f.ctx, c.batch...), c.want)
			f.wantStats(1, 0)
			f.wantProviders(stored.Key, 0, stored)
			f.wantProviders(good1.Key, 0)
			f.wantProviders(good2.Key, 0)
		}
	})
	t.Run("PerKeyLimit", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{MaxProvidersPerKey: 2})
		key := f.key()
		stored := f.newProvider(key, f.peer(), time.Hour)
		f.add(stored)
		refresh := stored
		refresh.Expires = f.now().Add(2 * time.Hour)
		n1, n2 := f.newProvider(key, f.peer(), time.Hour), f.newProvider(key, f.peer(), time.Hour)
		wantErr(t, "AddProviders of 2 new providers", f.s.AddProviders(f.ctx, refresh, n1, n2), store.ErrTooManyProviders)
		f.wantProviders(key, 0, stored)
		f.wantStats(1, 0)
		f.add(n1, refresh)
		f.wantProviders(key, 0, refresh, n1)
	})
	t.Run("StoreLimit", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{MaxRecords: 3})
		var batch []store.ProviderRecord
		for range 4 {
			batch = append(batch, f.newProvider(f.key(), f.peer(), time.Hour))
		}
		wantErr(t, "AddProviders of 4 records", f.s.AddProviders(f.ctx, batch...), store.ErrStoreFull)
		f.wantStats(0, 0)
		f.add(batch[:3]...)
		f.wantScanProviders(store.ScanOptions{}, batch[:3])
	})
	t.Run("Duplicates", func(t *testing.T) {
		// Two records with the same key and provider count once; the last
		// wins, and the first leaves nothing behind in the expiry index.
		f := newFixture(t, open, store.Limits{MaxProvidersPerKey: 1, MaxRecords: 1})
		key, p := f.key(), f.peer()
		first, last := f.newProvider(key, p, time.Minute), f.newProvider(key, p, time.Hour)
		last.Addrs = RandomAddrs(f.rng, 2)
		f.add(first, last)
		f.wantProviders(key, 0, last)
		f.wantStats(1, 0)
		f.clock.Advance(2 * time.Minute)
		f.wantExpire(f.now(), 0, 0)
		f.wantProviders(key, 0, last)
		first.Expires = f.now().Add(time.Minute)
		f.add(last, first) // now first is the refresh that wins
		f.wantProviders(key, 0, first)
	})
	t.Run("Empty", func(t *testing.T) {
		f := newFixture(t, open, store.Limits{})
		if err := f.s.AddProviders(f.ctx); err != nil {
			t.Errorf("AddProviders(): %v", err)
		}
		f.wantStats(0, 0)
	})
}
