package pgstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/storetest"
)

// statementCounter is a pgx tracer that counts the statements sent.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestStatementsPerCall: every call is one statement (so one round trip once
// pgx has prepared it on the connection), a batch up to BatchSize included;
// a larger batch is one statement per BatchSize records in one transaction;
// Expire is one statement per table while nothing more than ExpireBatch
// expired.
func TestStatementsPerCall(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	const batchSize = 50
	s, dsn := openInternal(t, Options{BatchSize: batchSize, Options: store.Options{Now: clock.Now}})
	ctx := t.Context()

	// The same store on a pool whose connections count statements.
	var counter statementCounter
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = &counter
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.pool.Close()
	s.pool = pool

	rng := storetest.NewRand(t)
	exp := clock.Now().Add(time.Hour)
	newRecs := func(n int) []store.ProviderRecord {
		recs := make([]store.ProviderRecord, n)
		for i := range recs {
			recs[i] = storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), exp)
		}
		return recs
	}
	one := newRecs(1)[0]
	full := newRecs(batchSize)
	large := newRecs(2*batchSize + 1)
	val := storetest.NewValueRecord(rng, []byte("/v/1"), one.Provider, clock.Now(), exp)
	short := storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(time.Minute))

	for _, tc := range []struct {
		name string
		want int64
		call func() error
	}{
		{"AddProviders of one record", 1, func() error { return s.AddProviders(ctx, one) }},
		{"AddProviders refreshing it", 1, func() error { return s.AddProviders(ctx, one) }},
		{fmt.Sprintf("AddProviders of %d records", batchSize), 1, func() error { return s.AddProviders(ctx, full...) }},
		// begin, three statements, commit.
		{fmt.Sprintf("AddProviders of %d records", len(large)), 5, func() error { return s.AddProviders(ctx, large...) }},
		{"Providers", 1, func() error { _, err := s.Providers(ctx, one.Key, 0); return err }},
		{"RemoveProvider", 1, func() error { return s.RemoveProvider(ctx, one.Key, one.Provider) }},
		{"PutValue", 1, func() error { return s.PutValue(ctx, val) }},
		{"GetValue", 1, func() error { _, err := s.GetValue(ctx, val.Key); return err }},
		{"Scan of providers", 1, func() error { _, err := s.Scan(ctx, store.ScanOptions{Kind: store.Providers, Limit: 10}); return err }},
		{"Scan of a provider", 1, func() error {
			_, err := s.Scan(ctx, store.ScanOptions{Kind: store.Providers, Peer: full[0].Provider})
			return err
		}},
		{"Scan of values", 1, func() error { _, err := s.Scan(ctx, store.ScanOptions{Kind: store.Values}); return err }},
		{"DeleteValue", 1, func() error { return s.DeleteValue(ctx, val.Key) }},
		{"Stats", 1, func() error { _, err := s.Stats(ctx); return err }},
		{"AddProviders of a short-lived record", 1, func() error { return s.AddProviders(ctx, short) }},
		{"Expire", 2, func() error {
			n, err := s.Expire(ctx, clock.Now().Add(2*time.Minute), 0)
			if err == nil && n != 1 {
				err = fmt.Errorf("expired %d records, want 1", n)
			}
			return err
		}},
	} {
		before := counter.n.Load()
		if err := tc.call(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := counter.n.Load() - before; got != tc.want {
			t.Errorf("%s: %d statements, want %d", tc.name, got, tc.want)
		}
	}
}
