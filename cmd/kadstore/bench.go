package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kadstore/kadstore/internal/bench"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/pebblestore"
	"github.com/kadstore/kadstore/store/pgstore"
)

var benchCommand = command{
	name:    "bench",
	summary: "run the store benchmark workloads and print their figures",
	run:     runBench,
}

// benchBackends are the stores `kadstore bench --backend` can run on, each
// with its default options. postgres needs --dsn.
func benchBackend(name, dsn, schemaPrefix string, analyze, sync bool) (bench.Backend, error) {
	if sync && name != "pebble" {
		return bench.Backend{}, errors.New("--sync is a pebble option")
	}
	switch name {
	case "pebble":
		return bench.Backend{
			Name:       "pebble",
			Persistent: true,
			Open: func(_ context.Context, dir string, opts store.Options) (store.Store, error) {
				return pebblestore.Open(dir, pebblestore.Options{Options: opts, Sync: sync})
			},
		}, nil
	case "memory":
		return bench.Backend{
			Name: "memory",
			Open: func(_ context.Context, _ string, opts store.Options) (store.Store, error) {
				return memstore.New(opts), nil
			},
		}, nil
	case "postgres":
		if dsn == "" {
			return bench.Backend{}, errors.New("--backend postgres needs --dsn")
		}
		if schemaPrefix == "" {
			schemaPrefix = fmt.Sprintf("kadstore_bench_%d_%04x", os.Getpid(), time.Now().UnixNano()&0xffff)
		}
		return pgBenchBackend(dsn, schemaPrefix, analyze), nil
	default:
		return bench.Backend{}, fmt.Errorf("unknown backend %q (want pebble, memory or postgres)", name)
	}
}

// pgBenchBackend runs the workload on pgstore with its default options. Each
// store of the run (ingest, store) gets a schema of its own, prefix_ingest and
// prefix_store, so a run never touches existing data and two runs with
// different prefixes do not meet; Remove drops the schema.
//
// With analyze, the store's tables are analyzed after the bulk ingest (see
// the --pg-analyze flag).
func pgBenchBackend(dsn, prefix string, analyze bool) bench.Backend {
	schema := func(dir string) string { return prefix + "_" + filepath.Base(dir) }
	exec := func(ctx context.Context, sql string) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		_, err = conn.Exec(ctx, sql)
		return err
	}
	var afterBulk func(ctx context.Context, dir string) error
	if analyze {
		afterBulk = func(ctx context.Context, dir string) error {
			return exec(ctx, "ANALYZE "+pgx.Identifier{schema(dir), "provider_records"}.Sanitize())
		}
	}
	return bench.Backend{
		Name:          "postgres",
		Persistent:    true,
		DiskFromStats: true,
		Open: func(ctx context.Context, dir string, opts store.Options) (store.Store, error) {
			return pgstore.Open(ctx, dsn, pgstore.Options{Options: opts, Schema: schema(dir)})
		},
		Remove: func(ctx context.Context, dir string) error {
			return exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema(dir)}.Sanitize()+" CASCADE")
		},
		AfterBulk: afterBulk,
	}
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "bench [flags]", stderr)
	var (
		cfg        bench.Config
		backend    = fs.String("backend", "pebble", "store backend: pebble, memory or postgres")
		dsn        = fs.String("dsn", "", "PostgreSQL connection string for --backend postgres (the run creates and drops its own schemas)")
		pgPrefix   = fs.String("schema-prefix", "", "prefix of the schemas a postgres run creates (default kadstore_bench_<pid>_<random>)")
		pgAnalyze  = fs.Bool("pg-analyze", false, "postgres: ANALYZE the store's table after the bulk ingest, untimed, as an operator would after a bulk load")
		sync       = fs.Bool("sync", false, "pebble: fsync every write (pebblestore.Options.Sync, kadstore node --sync)")
		asJSON     = fs.Bool("json", false, "print one JSON object instead of a table")
		cpuProfile = fs.String("cpuprofile", "", "write a CPU profile of the whole run (or of --profile-phase) to this file")
		profPhase  = fs.String("profile-phase", "", "limit --cpuprofile to this phase (raw-pebble, ingest, bulk-ingest, reopen, lookup-hit, lookup-hit-serial, lookup-miss, scan, expire)")
		memProfile = fs.String("memprofile", "", "write a heap profile at the end of the run to this file")
		verbose    = fs.Bool("v", false, "log each phase to stderr as it ends")
	)
	fs.Int64Var(&cfg.N, "n", 1_000_000, "number of provider records")
	fs.StringVar(&cfg.Dir, "dir", "", "working directory (default: a new temporary directory, removed at the end)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the stores' directories under --dir")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "workload seed")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "goroutines of the concurrent ingest and lookup phases")
	fs.Int64Var(&cfg.Lookups, "lookups", 0, "lookups per lookup phase (default min(n, 1000000))")
	fs.BoolVar(&cfg.SkipRaw, "skip-raw", false, "skip the raw Pebble baseline")
	fs.BoolVar(&cfg.SkipIngest, "skip-ingest", false, "skip the one-record-per-call ingest")
	fs.BoolVar(&cfg.DirectIngest, "direct-ingest", false, "ingest with one AddProviders call a record, each waited for (the path of a node's own records), instead of through the write-behind buffer of records received from peers")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b, err := benchBackend(*backend, *dsn, *pgPrefix, *pgAnalyze, *sync)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	cfg.Backend = b
	if b.Name == "postgres" {
		// The raw Pebble baseline measures what a Pebble-backed store could
		// reach; it says nothing about PostgreSQL.
		cfg.SkipRaw = true
	}
	if cfg.N <= 0 {
		fmt.Fprintln(stderr, "--n must be positive")
		return errUsage
	}

	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "kadstore-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Dir = dir
	}
	// Progress and phase logs go to stderr, and only to a terminal for the
	// bar, so stdout carries nothing but the result.
	if f, ok := stderr.(*os.File); ok {
		if p := newProgress(f); p != nil {
			cfg.Progress = p
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if *profPhase == "" {
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		} else {
			cfg.PhaseHook = func(phase string) func() {
				if phase != *profPhase || pprof.StartCPUProfile(f) != nil {
					return nil
				}
				return pprof.StopCPUProfile
			}
		}
	}

	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return printBenchTable(stdout, res)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.WriteHeapProfile(f), f.Close())
}

// benchTargets are the targets of the benchmark specification, per backend
// (pebble: issue 2, at 1 M and 10 M records; postgres: issue 6, at 1 M), by
// figure. A figure without a target for the backend shows none.
var benchTargets = map[string]map[string]string{
	"pebble": {
		"bulk": ">= 500000", "bulk/raw": ">= 50 %", "ingest": ">= 300000",
		"hit": ">= 250000", "hit-q": "p99 <= 200 µs", "miss": "p99 <= 50 µs",
		"scan": ">= 2000000", "expire": ">= 1000000", "expire-lookup": "<= 2x idle",
		"reopen": "<= 300 ms", "rss": "<= 256 MiB", "disk": "<= 1.3",
	},
	"postgres": {
		"bulk": ">= 100000", "hit-q": "p99 <= 1000 µs", "expire": ">= 100000",
	},
}

// printBenchTable prints the figures beside the targets of the benchmark
// specification for the backend.
func printBenchTable(w io.Writer, r *bench.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	target := benchTargets[r.Backend]
	raw, bulkVsRaw := fmt.Sprintf("%.0f records/s", r.RawPebbleRecordsPerSec), fmt.Sprintf("%.1f %%", r.BulkVsRaw*100)
	if r.RawPebbleRecordsPerSec == 0 {
		raw, bulkVsRaw = "n/a (skipped)", "n/a"
	}
	rss := mib(r.PeakRSSBytes)
	if r.Backend == "postgres" {
		rss += " (this process only; the server's memory is not counted)"
	}
	rows := [][3]string{
		{"records / keys", fmt.Sprintf("%d / %d (%s)", r.N, r.Keys, r.Backend), ""},
		{"generator alone, 1 goroutine", fmt.Sprintf("%.0f records/s", r.GeneratorRecordsPerSec), "(ceiling of the ingest figures)"},
		{"bulk ingest, batches of 1000", fmt.Sprintf("%.0f records/s", r.BulkIngestRecordsPerSec), target["bulk"]},
		{"raw Pebble batches, same bytes", raw, ""},
		{"bulk ingest / raw Pebble", bulkVsRaw, target["bulk/raw"]},
		{fmt.Sprintf("ingest, 1 record/call, %d goroutines", r.Concurrency), fmt.Sprintf("%.0f records/s", r.IngestRecordsPerSec), target["ingest"]},
		{fmt.Sprintf("lookup hit, %d goroutines", r.Concurrency), fmt.Sprintf("%.0f /s", r.LookupHitPerSec), target["hit"]},
		{"lookup hit p50 / p99 / p99.9", fmt.Sprintf("%.1f / %.1f / %.1f µs", r.LookupHitP50Us, r.LookupHitP99Us, r.LookupHitP999Us), target["hit-q"]},
		{"lookup hit p99, 1 goroutine", fmt.Sprintf("%.1f µs", r.LookupHitSerialP99Us), ""},
		{"lookup miss p50 / p99", fmt.Sprintf("%.1f / %.1f µs", r.LookupMissP50Us, r.LookupMissP99Us), target["miss"]},
		{"scan, pages of 1000", fmt.Sprintf("%.0f records/s", r.ScanRecordsPerSec), target["scan"]},
		{"expire 10 %", fmt.Sprintf("%.0f records/s (%d removed)", r.ExpireRecordsPerSec, r.ExpiredRecords), target["expire"]},
		{"lookup p99 during expire", fmt.Sprintf("%.1f µs (%.2fx idle, %d lookups)", r.ExpireLookupP99Us, r.ExpireLookupRatio, r.ExpireLookups), target["expire-lookup"]},
		{"reopen to first answer", fmt.Sprintf("%.1f ms", r.ReopenFirstAnswerMs), target["reopen"]},
		{"peak RSS", rss, target["rss"]},
		{"disk / raw record bytes", fmt.Sprintf("%s / %s = %.2f", mib(r.DiskBytes), mib(r.RawBytes), r.DiskRatio), target["disk"]},
	}
	fmt.Fprintln(tw, "figure\tvalue\ttarget")
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", row[0], row[1], row[2])
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "phase\tseconds\tops\tpeak RSS")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%.2f\t%d\t%s\n", p.Name, p.Seconds, p.Ops, mib(p.PeakRSSBytes))
	}
	return tw.Flush()
}
