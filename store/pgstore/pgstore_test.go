package pgstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pgstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// DSNEnv names the environment variable with the DSN of a database the tests
// may use (they create and drop schemas in it). Without it they skip.
const DSNEnv = pgstore.TestDSNEnv

// cleanupTimeout bounds the work of a test's cleanup.
const cleanupTimeout = 30 * time.Second

const skipMessage = pgstore.TestSkipMessage

// testDSN returns the test database's DSN, or skips the test.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		t.Skip(skipMessage)
	}
	return dsn
}

// schemaFor names the schema of a test directory: one per storetest subtest,
// and the same again when the suite reopens the directory.
func schemaFor(dir string) string {
	h := sha256.Sum256([]byte(dir))
	return "kst_" + hex.EncodeToString(h[:8])
}

// dropSchema drops schema when the test ends.
func dropSchema(t testing.TB, dsn, schema string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
}

// openSchema opens a store on schema, dropped when the test ends, and closed
// before that.
func openSchema(t testing.TB, dsn, schema string, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	dropSchema(t, dsn, schema)
	opts.Schema = schema
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 4 // many tests' pools share the server's max_connections
	}
	s, err := pgstore.Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	dsn := testDSN(t)
	storetest.RunPersistent(t, func(t testing.TB, dir string, opts store.Options) store.Store {
		return openSchema(t, dsn, schemaFor(dir), pgstore.Options{Options: opts})
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.schema != "" && os.Getenv("KADSTORE_BENCH_KEEP") == "" {
		if err := benchDrop(os.Getenv(DSNEnv), fixture.schema); err != nil {
			fmt.Fprintf(os.Stderr, "dropping the benchmark schema %s: %v\n", fixture.schema, err)
		}
	}
	os.Exit(code)
}
