package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/storetest"
)

// TestPlans checks that every statement reads the index it was designed for,
// so that its cost grows with what it returns or changes, not with what is
// stored: a provider lookup is one primary-key range, a region scan one
// primary-key range in scan order (no sort), a scan of one peer's records a
// range of the peer's index, expiry a range of the expires index, and writes
// probe by key. Sequential scans and bitmap scans are switched off for the
// EXPLAIN, so the planner shows a sequential scan (or a sort) only when no
// index can serve the statement: the test checks that the indexes fit the
// statements, whatever a small test table's statistics would make the
// planner prefer.
func TestPlans(t *testing.T) {
	ctx := t.Context()
	clock := storetest.NewClock(storetest.Start)
	s, _ := openInternal(t, Options{
		MaxConns: 2,
		Options: store.Options{
			Now: clock.Now,
			// Every limit on, so addProviders has all its checks.
			Limits: store.Limits{MaxRecordsPerProvider: 1000},
		},
	})

	// Some rows, so the plans are those of a table with statistics.
	rng := storetest.NewRand(t)
	exp := clock.Now().Add(time.Hour)
	var recs []store.ProviderRecord
	for range 2000 {
		recs = append(recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), exp))
	}
	if err := s.AddProviders(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		v := storetest.NewValueRecord(rng, fmt.Appendf(nil, "/v/%d", i), storetest.RandomPeer(rng), clock.Now(), exp)
		if err := s.PutValue(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE "+s.schema+".provider_records, "+s.schema+".value_records"); err != nil {
		t.Fatal(err)
	}

	now, far := s.bounds(clock.Now())
	kk := record.KadKeyOf(recs[0].Key)
	p := []byte(recs[0].Provider)
	half, ok := record.Region{Bits: 1}.End() // the first half of the keyspace
	if !ok {
		t.Fatal("the first half of the keyspace has no end")
	}
	batch := newProviderBatch(recs[:10])
	for _, tc := range []struct {
		name    string
		sql     string
		args    []any
		index   []string // indexes the plan must use
		table   string   // the table no sequential scan may read
		noSort  bool     // the index order must serve ORDER BY
		noIndex []string // indexes the plan must not use
	}{
		{"providers", s.sql.providers, []any{kk[:], now, far, 20},
			[]string{"provider_records_pkey"}, "provider_records", true, nil},
		{"scan region", s.sql.scanProviders, []any{kk[:], p, make([]byte, 32), half[:], 1000},
			[]string{"provider_records_pkey"}, "provider_records", true, nil},
		{"scan of a peer", s.sql.scanProvidersP, []any{p, providerHash(p), make([]byte, 32), keyspaceEnd, 1000},
			[]string{"provider_records_provider"}, "provider_records", true, nil},
		{"expire providers", s.sql.expireProvider, []any{now, far, 10000, int16(store.Providers), int16(0)},
			[]string{"provider_records_expires"}, "provider_records", false, nil},
		{"add providers", s.sql.addProviders, []any{batch.kadkeys, batch.providers, batch.providerHashes, batch.keys, batch.addrs, batch.expires, int64(20), int64(1000000), int64(1000), int16(0)},
			[]string{"provider_records_pkey", "provider_records_provider"}, "provider_records", false, []string{"provider_records_expires"}},
		{"remove provider", s.sql.removeProvider, []any{kk[:], p, int16(0)},
			[]string{"provider_records_pkey"}, "provider_records", false, nil},
		{"get value", s.sql.getValue, []any{kk[:], now, far},
			[]string{"value_records_pkey"}, "value_records", false, nil},
		{"put value", s.sql.putValue, []any{kk[:], []byte("k"), []byte("v"), []byte{}, now, now, int16(0), int64(1000000)},
			[]string{"value_records_pkey"}, "value_records", false, nil},
		{"scan values", s.sql.scanValues, []any{make([]byte, 32), half[:], 1000},
			[]string{"value_records_pkey"}, "value_records", true, nil},
		{"scan values of a peer", s.sql.scanValuesP, []any{p, make([]byte, 32), keyspaceEnd, 1000},
			[]string{"value_records_publisher"}, "value_records", true, nil},
		{"expire values", s.sql.expireValues, []any{now, far, 10000, int16(store.Values), int16(0)},
			[]string{"value_records_expires"}, "value_records", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := explain(t, s, tc.sql, tc.args...)
			for _, idx := range tc.index {
				if !strings.Contains(plan, "using "+idx+" ") {
					t.Errorf("plan does not use %s:\n%s", idx, plan)
				}
			}
			for _, idx := range tc.noIndex {
				if strings.Contains(plan, "using "+idx+" ") {
					t.Errorf("plan uses %s:\n%s", idx, plan)
				}
			}
			if strings.Contains(plan, "Seq Scan on "+tc.table) {
				t.Errorf("plan reads all of %s:\n%s", tc.table, plan)
			}
			if tc.noSort && strings.Contains(plan, "Sort") {
				t.Errorf("plan sorts instead of reading in index order:\n%s", plan)
			}
		})
	}
}

// openInternal opens a store on a new schema, dropped when the test ends,
// and returns it with the DSN; it skips the test without a database.
func openInternal(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	dsn := os.Getenv(TestDSNEnv)
	if dsn == "" {
		t.Skip(TestSkipMessage)
	}
	opts.Schema = fmt.Sprintf("kst_internal_%x", rand.Uint64())
	s, err := Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{opts.Schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	return s, dsn
}

// explain returns the plan of a statement with its arguments, without running
// it, planned with sequential and bitmap scans off.
func explain(t *testing.T, s *Store, sql string, args ...any) string {
	t.Helper()
	ctx := t.Context()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // only settings to discard
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatalf("EXPLAIN: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("EXPLAIN: %v", err)
	}
	return strings.Join(lines, "\n")
}
