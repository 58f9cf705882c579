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
	"time"

	"github.com/kadstore/kadstore/internal/sim"
)

var simulateCommand = command{
	name:    "simulate",
	summary: "simulate N nodes in one process (mocknet): one reprovide cycle, then check placement and lookups",
	run:     runSimulate,
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", "simulate [--nodes N] [--keys K] [--providers P] [--churn F] [--latency D] [--seed S] [--legacy] [--json]", stderr)
	var opts sim.Options
	var fill string
	fs.IntVar(&opts.Nodes, "nodes", 200, "nodes in the network")
	fs.IntVar(&opts.Keys, "keys", 10_000, "own keys to reprovide, spread over the providers")
	fs.IntVar(&opts.Providers, "providers", 10, "nodes that own keys")
	fs.Float64Var(&opts.Churn, "churn", 0, "fraction of the nodes that leave, and as many that join, during the cycle")
	fs.DurationVar(&opts.Latency, "latency", 0, "latency of every link, each way")
	fs.Uint64Var(&opts.Seed, "seed", 0, "seed of identities, keys and choices (0: pick one; it is printed)")
	fs.BoolVar(&opts.Legacy, "legacy", false, "reprovide with one lookup per key (go-libp2p-kad-dht's legacy reprovider) instead of by region")
	fs.IntVar(&opts.Finds, "finds", 1000, "FindProviders lookups that check the result")
	fs.StringVar(&fill, "fill", string(sim.FillDirect), "how routing tables are built: direct (every node offered to every table) or bootstrap (real lookups)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a summary")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	verbose := fs.Bool("v", false, "debug logging on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts.Fill = sim.Fill(fill)
	if opts.Seed == 0 {
		opts.Seed = uint64(time.Now().UnixNano())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Logger.Info("simulating", "seed", opts.Seed, "nodes", opts.Nodes, "keys", opts.Keys, "providers", opts.Providers,
		"churn", opts.Churn, "latency", opts.Latency, "legacy", opts.Legacy, "fill", opts.Fill)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := sim.Run(ctx, opts)
	if errors.Is(err, sim.ErrOptions) {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return errUsage
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "seed %d: %d nodes (%d left, %d joined), %d keys from %d providers, region bits %d\n",
		res.Seed, res.Nodes, res.Left, res.Joined, res.Keys, res.Providers, res.RegionBits)
	fmt.Fprintf(stdout, "cycle: %.1f s, %d lookups (%.5f per key), %d records sent, %d stored, %d errors\n",
		res.CycleSeconds, res.ReprovideLookups, res.LookupsPerKey, res.RecordsSent, res.RecordsStored, res.SendErrors)
	fmt.Fprintf(stdout, "placement: %.4f of %d (key, k closest live node) pairs hold the record\n", res.ClosestCoverage, res.ClosestPairs)
	fmt.Fprintf(stdout, "lookups: %d of %d FindProviders found the provider (%.4f)\n", res.Found, res.Finds, res.FindSuccess)
	fmt.Fprintf(stdout, "cost: build %.1f s, total %.1f s, peak RSS %d MiB\n", res.BuildSeconds, res.TotalSeconds, res.PeakRSS>>20)
	return nil
}
