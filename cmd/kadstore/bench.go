package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"text/tabwriter"

	"github.com/kadstore/kadstore/internal/bench"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/pebblestore"
)

var benchCommand = command{
	name:    "bench",
	summary: "run the store benchmark workloads and print their figures",
	run:     runBench,
}

// benchBackends are the stores `kadstore bench --backend` can run on.
var benchBackends = map[string]bench.Backend{
	"pebble": {
		Name:       "pebble",
		Persistent: true,
		Open: func(dir string, opts store.Options) (store.Store, error) {
			return pebblestore.Open(dir, pebblestore.Options{Options: opts})
		},
	},
	"memory": {
		Name: "memory",
		Open: func(_ string, opts store.Options) (store.Store, error) {
			return memstore.New(opts), nil
		},
	},
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "bench [flags]", stderr)
	var (
		cfg        bench.Config
		backend    = fs.String("backend", "pebble", "store backend: pebble or memory")
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b, ok := benchBackends[*backend]
	if !ok {
		fmt.Fprintf(stderr, "unknown backend %q (want pebble or memory)\n", *backend)
		return errUsage
	}
	cfg.Backend = b
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

// printBenchTable prints the figures beside the targets of the benchmark
// specification (which are set for the pebble backend at 1 M and 10 M
// records).
func printBenchTable(w io.Writer, r *bench.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	rows := [][3]string{
		{"records / keys", fmt.Sprintf("%d / %d (%s)", r.N, r.Keys, r.Backend), ""},
		{"generator alone, 1 goroutine", fmt.Sprintf("%.0f records/s", r.GeneratorRecordsPerSec), "(ceiling of the ingest figures)"},
		{"bulk ingest, batches of 1000", fmt.Sprintf("%.0f records/s", r.BulkIngestRecordsPerSec), ">= 500000"},
		{"raw Pebble batches, same bytes", fmt.Sprintf("%.0f records/s", r.RawPebbleRecordsPerSec), ""},
		{"bulk ingest / raw Pebble", fmt.Sprintf("%.1f %%", r.BulkVsRaw*100), ">= 50 %"},
		{fmt.Sprintf("ingest, 1 record/call, %d goroutines", r.Concurrency), fmt.Sprintf("%.0f records/s", r.IngestRecordsPerSec), ">= 300000"},
		{fmt.Sprintf("lookup hit, %d goroutines", r.Concurrency), fmt.Sprintf("%.0f /s", r.LookupHitPerSec), ">= 250000"},
		{"lookup hit p50 / p99 / p99.9", fmt.Sprintf("%.1f / %.1f / %.1f µs", r.LookupHitP50Us, r.LookupHitP99Us, r.LookupHitP999Us), "p99 <= 200 µs"},
		{"lookup hit p99, 1 goroutine", fmt.Sprintf("%.1f µs", r.LookupHitSerialP99Us), ""},
		{"lookup miss p50 / p99", fmt.Sprintf("%.1f / %.1f µs", r.LookupMissP50Us, r.LookupMissP99Us), "p99 <= 50 µs"},
		{"scan, pages of 1000", fmt.Sprintf("%.0f records/s", r.ScanRecordsPerSec), ">= 2000000"},
		{"expire 10 %", fmt.Sprintf("%.0f records/s (%d removed)", r.ExpireRecordsPerSec, r.ExpiredRecords), ">= 1000000"},
		{"lookup p99 during expire", fmt.Sprintf("%.1f µs (%.2fx idle, %d lookups)", r.ExpireLookupP99Us, r.ExpireLookupRatio, r.ExpireLookups), "<= 2x idle"},
		{"reopen to first answer", fmt.Sprintf("%.1f ms", r.ReopenFirstAnswerMs), "<= 300 ms"},
		{"peak RSS", mib(r.PeakRSSBytes), "<= 256 MiB"},
		{"disk / raw record bytes", fmt.Sprintf("%s / %s = %.2f", mib(r.DiskBytes), mib(r.RawBytes), r.DiskRatio), "<= 1.3"},
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
