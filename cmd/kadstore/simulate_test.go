package main_test

import (
	"bytes"
	"encoding/json"
	"testing"
)

// `kadstore simulate --json` prints one JSON object with the fields the
// issue asks for, and progress on stderr only.
func TestSimulateJSON(t *testing.T) {
	stdout, stderr, code := kadstore(t, "simulate", "--nodes", "40", "--keys", "400", "--providers", "1", "--finds", "50", "--seed", "9", "--json")
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
	}
	if !bytes.Contains(stderr, []byte("seed=9")) || !bytes.Contains(stderr, []byte("cycle done")) {
		t.Errorf("stderr lacks the seed or the progress:\n%s", stderr)
	}
	var res map[string]any
	dec := json.NewDecoder(bytes.NewReader(stdout))
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON object:\n%s", stdout)
	}
	for _, f := range []string{"nodes", "keys", "region_bits", "reprovide_lookups", "lookups_per_key", "records_sent",
		"closest_coverage", "find_success", "cycle_seconds", "peak_rss_bytes", "seed"} {
		if _, ok := res[f]; !ok {
			t.Errorf("field %q missing:\n%s", f, stdout)
		}
	}
	if res["nodes"] != 40.0 || res["keys"] != 400.0 || res["seed"] != 9.0 {
		t.Errorf("nodes, keys, seed = %v, %v, %v; want 40, 400, 9", res["nodes"], res["keys"], res["seed"])
	}
	num := func(field string) float64 { v, _ := res[field].(float64); return v }
	if num("closest_coverage") < 0.99 || num("find_success") < 0.99 {
		t.Errorf("closest_coverage %v, find_success %v: want at least 0.99 on a small network without churn", res["closest_coverage"], res["find_success"])
	}
	if res["records_sent"] != 400.0*20 {
		t.Errorf("records_sent %v, want %d", res["records_sent"], 400*20)
	}
}

func TestSimulateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"simulate", "--churn", "1.5"},
		{"simulate", "--nodes", "1"},
		{"simulate", "--fill", "osmosis"},
	} {
		stdout, stderr, code := kadstore(t, args...)
		if code != 2 || len(stdout) != 0 || !bytes.Contains(stderr, []byte("sim: invalid options")) {
			t.Errorf("%q: exit status %d, stdout %q, stderr:\n%s", args, code, stdout, stderr)
		}
	}
}
