package pgstore_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pgstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// TestCorruptRows: rows that no longer decode (edited by hand, or written by
// a bug) are reported and skipped; they hide no other record, and a scan
// still ends.
func TestCorruptRows(t *testing.T) {
	dsn := testDSN(t)
	schema := uniqueSchema(t)
	clock := storetest.NewClock(storetest.Start)
	rng := storetest.NewRand(t)
	s := openSchema(t, dsn, schema, pgstore.Options{Options: store.Options{Now: clock.Now}})
	ctx := t.Context()

	var recs []store.ProviderRecord
	key := storetest.RandomKey(rng)
	for range 3 {
		recs = append(recs, storetest.NewProviderRecord(rng, key, storetest.RandomPeer(rng), clock.Now().Add(time.Hour)))
	}
	for range 6 {
		recs = append(recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(time.Hour)))
	}
	if err := s.AddProviders(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	sortByPos(recs)
	vals := []store.ValueRecord{
		storetest.NewValueRecord(rng, []byte("/v/good"), "", clock.Now(), clock.Now().Add(time.Hour)),
		storetest.NewValueRecord(rng, []byte("/v/bad"), storetest.RandomPeer(rng), clock.Now(), clock.Now().Add(time.Hour)),
	}
	for _, v := range vals {
		if err := s.PutValue(ctx, v); err != nil {
			t.Fatal(err)
		}
	}

	// Damage: a provider record's addresses (one of key's three), another
	// record's provider ID (alone at its key), and a value's publisher.
	var badAddrs, badID int
	for i, r := range recs {
		if bytes.Equal(r.Key, key) {
			badAddrs = i
		} else if i > 0 && !bytes.Equal(recs[i-1].Key, key) && i+1 < len(recs) {
			badID = i
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	kk := func(k []byte) []byte { h := record.KadKeyOf(k); return h[:] }
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE " + table("provider_records") + ` SET addrs = '\x05ff' WHERE kadkey = $1 AND provider = $2`, []any{kk(recs[badAddrs].Key), []byte(recs[badAddrs].Provider)}},
		{"UPDATE " + table("provider_records") + ` SET provider = '\x0001' WHERE kadkey = $1`, []any{kk(recs[badID].Key)}},
		{"UPDATE " + table("value_records") + ` SET publisher = '\x0102' WHERE kadkey = $1`, []any{kk(vals[1].Key)}},
	} {
		if tag, err := conn.Exec(ctx, q.sql, q.args...); err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("%s: %v, %v", q.sql, tag, err)
		}
	}
	good := slices.Clone(recs)
	good = slices.Delete(good, max(badAddrs, badID), max(badAddrs, badID)+1)
	good = slices.Delete(good, min(badAddrs, badID), min(badAddrs, badID)+1)

	got, err := s.Providers(ctx, key, 0)
	if err != nil || len(got) != 2 {
		t.Errorf("Providers of a key with a corrupt record: %d records, %v; want the 2 good ones", len(got), err)
	}
	for _, limit := range []int{1, 2, 3, 100} {
		var out []store.ProviderRecord
		skipped := 0
		for p, err := range store.Pages(ctx, s, store.ScanOptions{Kind: store.Providers, Limit: limit}) {
			if err != nil {
				t.Fatalf("scan, limit %d: %v", limit, err)
			}
			out = append(out, p.Providers...)
			skipped += p.Skipped
		}
		if !equalRecords(out, good) {
			t.Errorf("scan, limit %d: %d records, want the %d good ones", limit, len(out), len(good))
		}
		if skipped < 1 {
			t.Errorf("scan, limit %d: %d skipped, want the corrupt addresses counted", limit, skipped)
		}
	}

	if _, err := s.GetValue(ctx, vals[1].Key); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("GetValue of a corrupt record: %v, want ErrCorrupt", err)
	}
	page, err := s.Scan(ctx, store.ScanOptions{Kind: store.Values})
	if err != nil || len(page.Values) != 1 || !page.Values[0].Equal(vals[0]) || page.Skipped != 1 {
		t.Errorf("scan of values: %d records, %d skipped, %v; want 1 and 1", len(page.Values), page.Skipped, err)
	}
}

// TestLargeBatch: a batch larger than BatchSize is several statements in one
// transaction, and still atomic.
func TestLargeBatch(t *testing.T) {
	dsn := testDSN(t)
	clock := storetest.NewClock(storetest.Start)
	rng := storetest.NewRand(t)
	s := openSchema(t, dsn, uniqueSchema(t), pgstore.Options{
		Options:   store.Options{Now: clock.Now, Limits: store.Limits{MaxProvidersPerKey: 2}},
		BatchSize: 10,
	})
	ctx := t.Context()
	var batch []store.ProviderRecord
	for range 35 {
		batch = append(batch, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(time.Hour)))
	}
	sortByPos(batch)
	// Three providers of the last key in scan order: the breach is in the
	// last statement, after three others succeeded.
	last := batch[len(batch)-1].Key
	over := append(slices.Clone(batch),
		storetest.NewProviderRecord(rng, last, storetest.RandomPeer(rng), clock.Now().Add(time.Hour)),
		storetest.NewProviderRecord(rng, last, storetest.RandomPeer(rng), clock.Now().Add(time.Hour)))
	if err := s.AddProviders(ctx, over...); !errors.Is(err, store.ErrTooManyProviders) {
		t.Fatalf("AddProviders of a batch breaking a limit in its last part: %v, want ErrTooManyProviders", err)
	}
	if st, err := s.Stats(ctx); err != nil || st.ProviderRecords != 0 {
		t.Errorf("after a failed batch: Stats %+v, %v; want nothing stored", st, err)
	}
	if got := scanAll(t, s, store.ScanOptions{}); len(got) != 0 {
		t.Errorf("after a failed batch: scan finds %d records", len(got))
	}
	if err := s.AddProviders(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, s, store.ScanOptions{}); !equalRecords(got, batch) {
		t.Errorf("scan: %d records, want the batch's %d", len(got), len(batch))
	}
	if st, err := s.Stats(ctx); err != nil || st.ProviderRecords != int64(len(batch)) {
		t.Errorf("Stats %+v, %v; want %d", st, err, len(batch))
	}
}
