package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requiredBenchFields are the fields the benchmark specification requires in
// `kadstore bench --json`.
var requiredBenchFields = []string{
	"n",
	"bulk_ingest_records_per_sec",
	"raw_pebble_records_per_sec",
	"ingest_records_per_sec",
	"lookup_hit_per_sec",
	"lookup_hit_p50_us",
	"lookup_hit_p99_us",
	"lookup_hit_p999_us",
	"lookup_miss_p99_us",
	"scan_records_per_sec",
	"expire_records_per_sec",
	"expire_lookup_p99_us",
	"reopen_first_answer_ms",
	"peak_rss_bytes",
	"disk_bytes",
}

// extraBenchFields are the documented additions (internal/bench.Result).
var extraBenchFields = []string{
	"backend", "keys", "concurrency", "generator_records_per_sec", "raw_bytes",
	"disk_ratio", "raw_pebble_disk_bytes", "bulk_vs_raw", "lookup_hit_serial_p99_us",
	"lookup_miss_per_sec", "lookup_miss_p50_us", "expired_records", "expire_lookups",
	"expire_lookup_ratio", "phases",
}

func TestBenchJSON(t *testing.T) {
	for _, backend := range []string{"memory", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			stdout, stderr, code := kadstore(t, "bench", "--backend", backend, "--n", "2000", "--json", "--dir", t.TempDir())
			if code != 0 {
				t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
			}
			// Output is not a terminal: no progress bar, so no carriage
			// return or escape sequence anywhere.
			for _, out := range [][]byte{stdout, stderr} {
				if bytes.ContainsAny(out, "\r\x1b") {
					t.Errorf("non-terminal output holds progress-bar control characters: %q", out)
				}
			}
			if len(bytes.TrimSpace(stderr)) != 0 {
				t.Errorf("stderr is not empty without -v:\n%s", stderr)
			}

			var res map[string]any
			dec := json.NewDecoder(bytes.NewReader(stdout))
			if err := dec.Decode(&res); err != nil {
				t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
			}
			if dec.More() {
				t.Fatalf("stdout holds more than one JSON value:\n%s", stdout)
			}
			for _, f := range requiredBenchFields {
				if _, ok := res[f].(float64); !ok {
					t.Errorf("required field %q missing or not a number (%v)", f, res[f])
				}
			}
			allowed := append(slices.Clone(requiredBenchFields), extraBenchFields...)
			for _, f := range slices.Sorted(maps.Keys(res)) {
				if !slices.Contains(allowed, f) {
					t.Errorf("undocumented field %q", f)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			num := func(f string) float64 { return res[f].(float64) }

			if num("n") != 2000 || res["backend"] != backend {
				t.Errorf("n = %v, backend = %v; want 2000, %s", res["n"], res["backend"], backend)
			}
			for _, f := range []string{
				"bulk_ingest_records_per_sec", "raw_pebble_records_per_sec", "ingest_records_per_sec",
				"lookup_hit_per_sec", "lookup_hit_p50_us", "lookup_miss_p99_us",
				"scan_records_per_sec", "expire_records_per_sec",
			} {
				// Above zero, and below a rate or latency no machine reaches.
				if v := num(f); v <= 0 || v > 1e10 {
					t.Errorf("%s = %v, not plausible", f, v)
				}
			}
			if p50, p99, p999 := num("lookup_hit_p50_us"), num("lookup_hit_p99_us"), num("lookup_hit_p999_us"); p50 > p99 || p99 > p999 {
				t.Errorf("lookup hit quantiles out of order: p50 %v, p99 %v, p99.9 %v", p50, p99, p999)
			}
			if v := num("expire_lookup_p99_us"); v < 0 || (num("expire_lookups") > 0 && v == 0) {
				t.Errorf("expire_lookup_p99_us = %v with %v lookups", v, num("expire_lookups"))
			}
			if v := num("peak_rss_bytes"); v < 1<<20 || v > 1<<34 {
				t.Errorf("peak_rss_bytes = %v, not plausible", v)
			}
			if num("expired_records") != 200 {
				t.Errorf("expired_records = %v, want 200 (10%% of 2000)", num("expired_records"))
			}
			// Each record encodes to 100-200 bytes (34-byte key, 38-byte
			// peer ID, two addresses, expiry).
			if raw := num("raw_bytes"); raw < 2000*100 || raw > 2000*200 {
				t.Errorf("raw_bytes = %v, want 200-400 kB for 2000 records", raw)
			}
			// raw-pebble, ingest, bulk-ingest, three lookup phases, scan,
			// expire; and reopen for a persistent store.
			wantPhases := map[string]int{"memory": 8, "pebble": 9}[backend]
			if phases, _ := res["phases"].([]any); len(phases) != wantPhases {
				t.Errorf("%d phases reported, want %d", len(phases), wantPhases)
			}
			switch backend {
			case "pebble":
				if v := num("disk_bytes"); v <= 0 || v > 1<<30 {
					t.Errorf("disk_bytes = %v for a persistent store", v)
				}
				if v := num("reopen_first_answer_ms"); v <= 0 || v > 60_000 {
					t.Errorf("reopen_first_answer_ms = %v for a persistent store", v)
				}
			case "memory":
				if num("disk_bytes") != 0 || num("reopen_first_answer_ms") != 0 {
					t.Errorf("memory backend reports disk_bytes %v, reopen %v ms; want 0, 0",
						num("disk_bytes"), num("reopen_first_answer_ms"))
				}
			}
		})
	}
}

func TestBenchTable(t *testing.T) {
	stdout, stderr, code := kadstore(t, "bench", "--backend", "memory", "--n", "500", "--skip-raw", "--skip-ingest", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"bulk ingest, batches of 1000", "lookup hit p50 / p99 / p99.9", "peak RSS", "bulk-ingest", "expire"} {
		if !bytes.Contains(stdout, []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if bytes.ContainsAny(stdout, "\r\x1b") || bytes.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("non-terminal output holds progress-bar control characters")
	}
}

// TestBenchPostgres runs the workload on pgstore when a test database is
// configured (as for store/pgstore's tests), and checks that the run leaves
// none of its schemas behind.
func TestBenchPostgres(t *testing.T) {
	dsn := os.Getenv("KADSTORE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KADSTORE_TEST_POSTGRES is not set: see docs/POSTGRES.md")
	}
	prefix := fmt.Sprintf("kbt_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	stdout, stderr, code := kadstore(t, "bench", "--backend", "postgres", "--dsn", dsn, "--schema-prefix", prefix,
		"--n", "900", "--lookups", "300", "--json", "--dir", t.TempDir())
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	for _, f := range requiredBenchFields {
		if _, ok := res[f].(float64); !ok {
			t.Errorf("required field %q missing or not a number (%v)", f, res[f])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	num := func(f string) float64 { return res[f].(float64) }
	if res["backend"] != "postgres" || num("expired_records") != 90 {
		t.Errorf("backend %v, expired_records %v; want postgres, 90", res["backend"], num("expired_records"))
	}
	// The raw Pebble baseline means nothing for PostgreSQL: skipped, 0.
	if num("raw_pebble_records_per_sec") != 0 {
		t.Errorf("raw_pebble_records_per_sec = %v, want 0 (skipped)", num("raw_pebble_records_per_sec"))
	}
	// The disk figure is the size of the store's tables and indexes.
	if v := num("disk_bytes"); v <= 0 {
		t.Errorf("disk_bytes = %v, want the schema's size", v)
	}
	if v := num("reopen_first_answer_ms"); v <= 0 {
		t.Errorf("reopen_first_answer_ms = %v", v)
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left []string
	rows, err := conn.Query(t.Context(), "SELECT schema_name FROM information_schema.schemata WHERE starts_with(schema_name, $1)", prefix)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		left = append(left, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("the run left its schemas behind: %v", left)
	}
}

func TestBenchPostgresNeedsDSN(t *testing.T) {
	_, stderr, code := kadstore(t, "bench", "--backend", "postgres", "--n", "10")
	if code != 2 || !bytes.Contains(stderr, []byte("needs --dsn")) {
		t.Errorf("exit %d, stderr %q; want 2 and a message asking for --dsn", code, stderr)
	}
}
