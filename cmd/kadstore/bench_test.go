package main_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"
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
