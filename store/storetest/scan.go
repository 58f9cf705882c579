package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// populate stores provider records for nKeys random keys, 1 to 3 providers
// each drawn from peers, and nValues value records published by one of peers
// or by nobody, all live for 10 to 60 minutes. It returns what it stored.
func (f *fixture) populate(nKeys, nValues int, peers []peer.ID) ([]store.ProviderRecord, []store.ValueRecord) {
	f.t.Helper()
	ttl := func() time.Duration { return time.Duration(600+f.rng.IntN(3000)) * time.Second }
	var provs []store.ProviderRecord
	for range nKeys {
		key := f.key()
		for _, i := range f.rng.Perm(len(peers))[:1+f.rng.IntN(min(3, len(peers)))] {
			provs = append(provs, f.newProvider(key, peers[i], ttl()))
		}
	}
	for batch := range slices.Chunk(provs, 50) {
		f.add(batch...)
	}
	var vals []store.ValueRecord
	for i := range nValues {
		var pub peer.ID
		if j := f.rng.IntN(len(peers) + 1); j < len(peers) {
			pub = peers[j]
		}
		vals = append(vals, f.newValue(fmt.Sprintf("/test/%d", i), pub, ttl()))
	}
	f.put(vals...)
	return provs, vals
}

func (f *fixture) peers(n int) []peer.ID {
	ps := make([]peer.ID, n)
	for i := range ps {
		ps[i] = f.peer()
	}
	return ps
}

// scanPages reads at most n pages of a scan, failing the test unless the scan
// goes on after them.
func (f *fixture) scanPages(opts store.ScanOptions, n int) scanned {
	f.t.Helper()
	res, err := scan(f.ctx, f.s, opts, f.limits, f.now(), n)
	if err != nil {
		f.t.Fatalf("Scan(%s): %v", fmtScan(opts), err)
	}
	if res.next == nil {
		f.t.Fatalf("Scan(%s) ended after %d pages of %d records", fmtScan(opts), res.pages, len(res.providers)+len(res.values))
	}
	return res
}

func testScanAll(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	provs, vals := f.populate(100, 80, f.peers(5))
	for _, limit := range []int{1, 7, 0, -1, store.MaxScanLimit + 1} {
		f.wantScanProviders(store.ScanOptions{Limit: limit}, provs)
		f.wantScanValues(store.ScanOptions{Limit: limit}, vals)
	}
	// The iterators of package store walk the same records.
	var got []store.ProviderRecord
	for r, err := range store.ScanProviders(f.ctx, f.s, store.ScanOptions{Limit: 9}) {
		if err != nil {
			t.Fatalf("ScanProviders: %v", err)
		}
		got = append(got, r)
	}
	sortProviders(provs)
	if d := diffProviders(got, provs); d != "" {
		t.Errorf("ScanProviders: %s", d)
	}
}

func testScanEmpty(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	region := record.RegionOf(record.KadKeyOf([]byte("x")), 3)
	for _, opts := range []store.ScanOptions{{}, {Limit: 1}, {Region: region}, {Peer: f.peer()}} {
		f.wantScanProviders(opts, nil)
		f.wantScanValues(opts, nil)
	}
	// Only expired records: nothing to return either.
	f.populate(20, 20, f.peers(2))
	f.clock.Advance(time.Hour)
	for _, opts := range []store.ScanOptions{{}, {Limit: 1}, {Region: region}} {
		f.wantScanProviders(opts, nil)
		f.wantScanValues(opts, nil)
	}
}

func testScanRegion(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	provs, vals := f.populate(120, 100, f.peers(4))
	var first, last record.KadKey
	for i := range last {
		last[i] = 0xff
	}
	var regions []record.Region
	for bits := 1; bits <= 8; bits++ {
		regions = append(regions,
			record.RegionOf(first, bits),
			record.RegionOf(last, bits),
			record.RegionOf(provs[f.rng.IntN(len(provs))].KadKey(), bits),
			record.RegionOf(vals[f.rng.IntN(len(vals))].KadKey(), bits),
			// Bits of Prefix beyond the region's length are ignored.
			record.Region{Prefix: provs[f.rng.IntN(len(provs))].KadKey(), Bits: bits},
		)
	}
	regions = append(regions, record.Region{},
		record.RegionOf(provs[0].KadKey(), 16),
		record.RegionOf(provs[0].KadKey(), 256),
		record.RegionOf(vals[0].KadKey(), 256))
	for _, region := range regions {
		opts := store.ScanOptions{Region: region, Limit: 1 + f.rng.IntN(5)}
		f.wantScanProviders(opts, filter(provs, func(r store.ProviderRecord) bool { return region.Contains(r.KadKey()) }))
		f.wantScanValues(opts, filter(vals, func(r store.ValueRecord) bool { return region.Contains(r.KadKey()) }))
	}
	// The regions of one length partition the keyspace.
	var got []store.ProviderRecord
	for r, ok := record.RegionOf(first, 3), true; ok; r, ok = r.Next() {
		got = append(got, f.scan(store.ScanOptions{Kind: store.Providers, Region: r, Limit: 10}).providers...)
	}
	sortProviders(provs)
	if d := diffProviders(got, provs); d != "" {
		t.Errorf("the 8 regions of 3 bits: %s", d)
	}
}

func testScanPeer(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	peers := f.peers(4)
	provs, vals := f.populate(80, 60, peers)
	for _, p := range append(peers, f.peer()) {
		ofPeer := filter(provs, func(r store.ProviderRecord) bool { return r.Provider == p })
		published := filter(vals, func(r store.ValueRecord) bool { return r.Publisher == p })
		f.wantScanProviders(store.ScanOptions{Peer: p, Limit: 3}, ofPeer)
		f.wantScanValues(store.ScanOptions{Peer: p, Limit: 3}, published)
		for bits := 1; bits <= 3; bits++ {
			region := record.RegionOf(provs[f.rng.IntN(len(provs))].KadKey(), bits)
			in := func(k record.KadKey) bool { return region.Contains(k) }
			opts := store.ScanOptions{Peer: p, Region: region, Limit: 1 + f.rng.IntN(3)}
			f.wantScanProviders(opts, filter(ofPeer, func(r store.ProviderRecord) bool { return in(r.KadKey()) }))
			f.wantScanValues(opts, filter(published, func(r store.ValueRecord) bool { return in(r.KadKey()) }))
		}
	}
}

func testScanResume(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	provs, vals := f.populate(60, 50, f.peers(3))
	sortProviders(provs)
	sortValues(vals)

	head := f.scanPages(store.ScanOptions{Kind: store.Providers, Limit: 10}, 3)
	n := len(head.providers)
	if d := diffProviders(head.providers, provs[:n]); d != "" {
		t.Fatalf("first 3 pages: %s", d)
	}
	cursor := slices.Clone(head.next)
	// A cursor may be used again: it is a position, not a handle.
	for _, limit := range []int{4, 1000} {
		f.wantScanProviders(store.ScanOptions{After: cursor, Limit: limit}, provs[n:])
	}
	// Removing the records on either side of the cursor's position does not
	// invalidate it.
	for _, r := range []store.ProviderRecord{provs[n-1], provs[n]} {
		if err := f.s.RemoveProvider(f.ctx, r.Key, r.Provider); err != nil {
			t.Fatal(err)
		}
	}
	f.wantScanProviders(store.ScanOptions{After: cursor, Limit: 3}, provs[n+1:])

	vhead := f.scanPages(store.ScanOptions{Kind: store.Values, Limit: 7}, 2)
	m := len(vhead.values)
	if d := diffValues(vhead.values, vals[:m]); d != "" {
		t.Fatalf("first 2 pages: %s", d)
	}
	if err := f.s.DeleteValue(f.ctx, vals[m-1].Key); err != nil {
		t.Fatal(err)
	}
	f.wantScanValues(store.ScanOptions{After: vhead.next, Limit: 5}, vals[m:])

	// A region scan resumes within its region.
	region := record.RegionOf(provs[0].KadKey(), 1)
	inRegion := filter(provs[n+1:], func(r store.ProviderRecord) bool { return region.Contains(r.KadKey()) })
	inRegion = append(filter(provs[:n-1], func(r store.ProviderRecord) bool { return region.Contains(r.KadKey()) }), inRegion...)
	rhead := f.scanPages(store.ScanOptions{Kind: store.Providers, Region: region, Limit: 2}, 2)
	k := len(rhead.providers)
	if d := diffProviders(rhead.providers, inRegion[:k]); d != "" {
		t.Fatalf("first 2 pages of region %v: %s", region, d)
	}
	f.wantScanProviders(store.ScanOptions{Region: region, After: rhead.next, Limit: 4}, inRegion[k:])
}

func testScanCursorPortable(t *testing.T, open OpenFunc) {
	// Cursors encode positions (store.NewCursor), so a cursor made elsewhere,
	// by another backend or by hand, resumes at the same place.
	f := newFixture(t, open, store.Limits{})
	provs, vals := f.populate(40, 40, f.peers(3))
	sortProviders(provs)
	sortValues(vals)
	after := func(pos store.Position) func(r store.ProviderRecord) bool {
		return func(r store.ProviderRecord) bool { return posOf(r).Compare(pos) > 0 }
	}
	for _, pos := range []store.Position{
		posOf(provs[10]),
		{Key: provs[20].KadKey()}, // before every provider of that key
		{Key: record.KadKeyOf([]byte("between"))},
		{},
	} {
		f.wantScanProviders(store.ScanOptions{After: store.NewCursor(store.Providers, pos), Limit: 6}, filter(provs, after(pos)))
	}
	for _, pos := range []store.Position{valuePos(vals[5]), {Key: record.KadKeyOf([]byte("between"))}} {
		f.wantScanValues(store.ScanOptions{After: store.NewCursor(store.Values, pos), Limit: 6},
			filter(vals, func(r store.ValueRecord) bool { return valuePos(r).Compare(pos) > 0 }))
	}
	// A cursor before a region starts the region; one past its end ends the scan.
	region := record.RegionOf(provs[len(provs)/2].KadKey(), 2)
	inRegion := filter(provs, func(r store.ProviderRecord) bool { return region.Contains(r.KadKey()) })
	f.wantScanProviders(store.ScanOptions{Region: region, After: store.NewCursor(store.Providers, store.Position{}), Limit: 5}, inRegion)
	var last store.Position
	for i := range last.Key {
		last.Key[i] = 0xff
	}
	f.wantScanProviders(store.ScanOptions{Region: region, After: store.NewCursor(store.Providers, last)}, nil)
	f.wantScanValues(store.ScanOptions{After: store.NewCursor(store.Values, last)}, nil)
}

func testScanBadCursor(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	f.populate(5, 5, f.peers(2))
	pc := f.scanPages(store.ScanOptions{Kind: store.Providers, Limit: 1}, 1).next
	vc := f.scanPages(store.ScanOptions{Kind: store.Values, Limit: 1}, 1).next
	wrongVersion := slices.Clone(pc)
	wrongVersion[0] ^= 0xff
	cases := []struct {
		name   string
		kind   store.Kind
		cursor store.Cursor
	}{
		{"providers cursor for values", store.Values, pc},
		{"values cursor for providers", store.Providers, vc},
		{"garbage", store.Providers, store.Cursor{1, 2, 3}},
		{"empty", store.Values, store.Cursor{}},
		{"unknown version", store.Providers, wrongVersion},
		{"truncated", store.Providers, slices.Clone(pc[:10])},
		{"values cursor with a tail", store.Values, append(slices.Clone(vc), 1)},
		{"bad provider", store.Providers, append(slices.Clone(pc[:2+record.KadKeySize]), 0xff, 0xff)},
	}
	for _, c := range cases {
		_, err := f.s.Scan(f.ctx, store.ScanOptions{Kind: c.kind, After: c.cursor})
		wantErr(t, "Scan with a cursor: "+c.name, err, store.ErrBadCursor)
	}
}

func testScanBadOptions(t *testing.T, open OpenFunc) {
	f := newFixture(t, open, store.Limits{})
	f.populate(3, 3, f.peers(1))
	for _, opts := range []store.ScanOptions{
		{},
		{Kind: store.Values + 1},
		{Kind: store.Providers, Region: record.Region{Bits: -1}},
		{Kind: store.Values, Region: record.Region{Bits: 8*record.KadKeySize + 1}},
		{Kind: store.Providers, Peer: "not a peer"},
		{Kind: store.Values, Peer: "x"},
	} {
		_, err := f.s.Scan(f.ctx, opts)
		wantErr(t, fmt.Sprintf("Scan(%s)", fmtScan(opts)), err, store.ErrBadScan)
	}
}

func testScanConcurrentWrites(t *testing.T, open OpenFunc) {
	// While other goroutines write other keys (and refresh some scanned
	// records), a scan returns every unchanged record exactly once, in order.
	f := newFixture(t, open, store.Limits{})
	peers := f.peers(4)
	provs, vals := f.populate(150, 100, peers)
	refreshed := make(map[store.Position]bool)
	for i, r := range provs {
		if i%4 == 0 {
			refreshed[posOf(r)] = true
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := func(seed uint64, step func(rng *rand.Rand, i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, seed))
			for i := range 20_000 {
				select {
				case <-stop:
					return
				default:
				}
				if err := step(rng, i); err != nil {
					t.Errorf("writer: %v", err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	var added []store.ProviderRecord // by the first writer, still stored
	writer(f.rng.Uint64(), func(rng *rand.Rand, i int) error {
		if i%3 == 2 {
			mu.Lock()
			r := added[0]
			added = added[1:]
			mu.Unlock()
			return f.s.RemoveProvider(f.ctx, r.Key, r.Provider)
		}
		r := NewProviderRecord(rng, RandomKey(rng), peers[rng.IntN(len(peers))], f.now().Add(time.Hour))
		mu.Lock()
		added = append(added, r)
		mu.Unlock()
		return f.s.AddProviders(f.ctx, r)
	})
	writer(f.rng.Uint64(), func(rng *rand.Rand, i int) error {
		if i%2 == 1 {
			return f.s.DeleteValue(f.ctx, fmt.Appendf(nil, "/test/other/%d", i-1))
		}
		return f.s.PutValue(f.ctx, NewValueRecord(rng, fmt.Appendf(nil, "/test/other/%d", i), "", f.now(), f.now().Add(time.Hour)))
	})
	writer(f.rng.Uint64(), func(rng *rand.Rand, i int) error {
		r := provs[4*rng.IntN(len(provs)/4)]
		r.Expires = f.now().Add(time.Duration(1+rng.IntN(3600)) * time.Second)
		return f.s.AddProviders(f.ctx, r)
	})

	pres, perr := scan(f.ctx, f.s, store.ScanOptions{Kind: store.Providers, Limit: 5}, f.limits, f.now(), 0)
	vres, verr := scan(f.ctx, f.s, store.ScanOptions{Kind: store.Values, Limit: 5}, f.limits, f.now(), 0)
	close(stop)
	wg.Wait()
	if perr != nil || verr != nil {
		t.Fatalf("Scan: %v", errors.Join(perr, verr))
	}

	got := make(map[store.Position]store.ProviderRecord, len(pres.providers))
	for _, r := range pres.providers {
		got[posOf(r)] = r
	}
	for _, r := range provs {
		g, ok := got[posOf(r)]
		switch {
		case refreshed[posOf(r)]:
		case !ok:
			t.Errorf("Scan missed %s", fmtProvider(r))
		case !g.Equal(r):
			t.Errorf("Scan returned %s, want %s", fmtProvider(g), fmtProvider(r))
		}
	}
	gotValues := make(map[string]store.ValueRecord, len(vres.values))
	for _, r := range vres.values {
		gotValues[string(r.Key)] = r
	}
	for _, r := range vals {
		if g, ok := gotValues[string(r.Key)]; !ok {
			t.Errorf("Scan missed %s", fmtValue(r))
		} else if !g.Equal(r) {
			t.Errorf("Scan returned %s, want %s", fmtValue(g), fmtValue(r))
		}
	}
}
