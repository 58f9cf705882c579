package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/storetest"
)

func TestCursorRoundTrip(t *testing.T) {
	p := storetest.NewPeer(t)
	pos := store.Position{Key: record.KadKeyOf([]byte("k")), Provider: p}
	got, err := store.NewCursor(store.Providers, pos).Decode(store.Providers)
	if err != nil || got != pos {
		t.Fatalf("providers cursor: %v %v", got, err)
	}
	vpos := store.Position{Key: pos.Key}
	got, err = store.NewCursor(store.Values, pos).Decode(store.Values)
	if err != nil || got != vpos {
		t.Fatalf("values cursor keeps only the key: %v %v", got, err)
	}
}

func TestCursorRejects(t *testing.T) {
	good := store.NewCursor(store.Providers, store.Position{Provider: storetest.NewPeer(t)})
	bad := map[string]struct {
		c    store.Cursor
		kind store.Kind
	}{
		"wrong kind":   {good, store.Values},
		"empty":        {store.Cursor{}, store.Providers},
		"short":        {good[:10], store.Providers},
		"bad version":  {append(store.Cursor{9}, good[1:]...), store.Providers},
		"bad provider": {append(append(store.Cursor{}, good[:34]...), 0xFF, 0xFF), store.Providers},
		"values tail":  {append(store.NewCursor(store.Values, store.Position{}), 1), store.Values},
	}
	for name, tc := range bad {
		if _, err := tc.c.Decode(tc.kind); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("%s: err = %v, want ErrBadCursor", name, err)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	a := store.Position{Key: record.KadKey{1}, Provider: "b"}
	b := store.Position{Key: record.KadKey{1}, Provider: "c"}
	c := store.Position{Key: record.KadKey{2}, Provider: "a"}
	if a.Compare(b) >= 0 || b.Compare(c) >= 0 || c.Compare(a) <= 0 || a.Compare(a) != 0 {
		t.Fatal("positions are not ordered by key then provider")
	}
}

func TestLimitsChecks(t *testing.T) {
	var l store.Limits
	l.EnsureDefaults()
	now := time.UnixMilli(1_800_000_000_000)
	p := storetest.NewPeer(t)
	ok := store.ProviderRecord{Key: []byte("k"), Provider: p, Expires: now.Add(time.Hour)}
	if err := l.CheckProvider(ok, now); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(*store.ProviderRecord)
		want   error
	}{
		{"empty key", func(r *store.ProviderRecord) { r.Key = nil }, store.ErrEmptyKey},
		{"big key", func(r *store.ProviderRecord) { r.Key = make([]byte, l.MaxKeySize+1) }, store.ErrKeyTooLarge},
		{"no provider", func(r *store.ProviderRecord) { r.Provider = "" }, store.ErrInvalidPeer},
		{"bad provider", func(r *store.ProviderRecord) { r.Provider = "not a multihash" }, store.ErrInvalidPeer},
		{"past", func(r *store.ProviderRecord) { r.Expires = now }, store.ErrExpired},
		{"too far", func(r *store.ProviderRecord) { r.Expires = now.Add(l.MaxTTL + time.Millisecond) }, store.ErrTTLTooLong},
	}
	for _, tc := range cases {
		r := ok
		tc.mutate(&r)
		if err := l.CheckProvider(r, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	v := store.ValueRecord{Key: []byte("/pk/x"), Value: make([]byte, l.MaxValueSize+1), Expires: now.Add(time.Hour)}
	if err := l.CheckValue(v, now); !errors.Is(err, store.ErrValueTooLarge) {
		t.Errorf("big value: %v", err)
	}
	if l.Live(now.Add(2*l.MaxTTL+time.Second), now) {
		t.Error("a record beyond 2×MaxTTL is served")
	}
	if !l.Live(now.Add(l.MaxTTL), now) || l.Live(now, now) {
		t.Error("Live boundaries wrong")
	}
}

func TestCheckScan(t *testing.T) {
	if _, _, err := store.CheckScan(store.ScanOptions{}); !errors.Is(err, store.ErrBadScan) {
		t.Fatalf("no kind: %v", err)
	}
	if _, _, err := store.CheckScan(store.ScanOptions{Kind: store.Values, Region: record.Region{Bits: 257}}); !errors.Is(err, store.ErrBadScan) {
		t.Fatalf("long region: %v", err)
	}
	o, pos, err := store.CheckScan(store.ScanOptions{Kind: store.Values, Limit: 1 << 30})
	if err != nil || pos != nil || o.Limit != store.MaxScanLimit {
		t.Fatalf("limit not capped: %+v %v", o, err)
	}
}

// pagedStore serves n value records in pages of two, through Scan only.
type pagedStore struct {
	store.Store
	n     int
	calls int
}

func (s *pagedStore) Scan(ctx context.Context, o store.ScanOptions) (store.Page, error) {
	s.calls++
	start := 0
	if o.After != nil {
		pos, err := o.After.Decode(store.Values)
		if err != nil {
			return store.Page{}, err
		}
		start = int(pos.Key[0])
	}
	var p store.Page
	for i := start; i < s.n && len(p.Values) < 2; i++ {
		p.Values = append(p.Values, store.ValueRecord{Key: []byte{byte(i)}})
	}
	if end := start + len(p.Values); end < s.n {
		p.Next = store.NewCursor(store.Values, store.Position{Key: record.KadKey{byte(end)}})
	}
	return p, nil
}

func TestScanValuesIterates(t *testing.T) {
	s := &pagedStore{n: 5}
	var got []byte
	for r, err := range store.ScanValues(context.Background(), s, store.ScanOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Key[0])
	}
	if string(got) != "\x00\x01\x02\x03\x04" || s.calls != 3 {
		t.Fatalf("got %v in %d calls", got, s.calls)
	}
	// Breaking early stops fetching pages.
	s.calls = 0
	for range store.ScanValues(context.Background(), s, store.ScanOptions{}) {
		break
	}
	if s.calls != 1 {
		t.Fatalf("early break fetched %d pages", s.calls)
	}
}
