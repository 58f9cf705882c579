// Package bench is the workload generator and runner behind `kadstore bench`.
//
// The workload is N provider records derived deterministically from a seed
// (Workload.Record), so the runner never holds the record set in memory: it
// regenerates a record, or just its key, whenever a phase needs it. That keeps
// the benchmark's own memory out of the peak RSS it reports, which is one of the
// figures being measured.
//
// Run executes the phases in a fixed order on one backend (raw Pebble baseline,
// network-path ingest, bulk ingest, close and reopen, lookups, scan, expire with
// concurrent lookups) and returns a Result whose JSON field names are the
// figures docs/BENCHMARKS.md reports. Latencies are recorded in a bounded
// log-linear Histogram, never as a list of samples.
package bench
