package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kadstore/kadstore/internal/daemon"
	"github.com/kadstore/kadstore/internal/datadir"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pgstore"
)

var nodeCommand = command{
	name:    "node",
	summary: "run a DHT node on a data directory (Pebble store), with the HTTP API",
	run:     runNode,
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("node", "node [flags]", stderr)
	var cfg daemon.Config
	var listen, bootstrap multiFlag
	fs.StringVar(&cfg.DataDir, "data", datadir.Default, "data directory: identity key, Pebble store, job state, and the API address while the node runs")
	fs.StringVar(&cfg.Store, "store", "pebble", "record store: pebble (in --data), memory, or a postgres://… DSN")
	fs.StringVar(&cfg.PostgresSchema, "pg-schema", pgstore.DefaultSchema, "postgres: the schema holding the store's tables (nodes sharing records use the same one)")
	fs.Func("min-free-space", "pebble: free disk space kept in reserve, in MiB; below it new records are refused (API 507) until space is freed (default 1% of the filesystem, 16 to 1024 MiB; -1: no check)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		if n < 0 {
			cfg.MinFreeSpace = -1
		} else {
			cfg.MinFreeSpace = n << 20
		}
		return nil
	})
	fs.BoolVar(&cfg.Sync, "sync", false, "pebble: fsync every write before acknowledging it, so that it survives power loss (without it, acknowledged writes survive a crash of the process but not of the machine)")
	fs.Var(&listen, "listen", "listen multiaddr (repeatable; default TCP and QUIC on port 4001, all interfaces)")
	fs.Var(&bootstrap, "bootstrap", `bootstrap peer multiaddr with /p2p (repeatable; default the public Amino DHT peers; "none" for an isolated node)`)
	fs.StringVar(&cfg.Mode, "mode", "auto", "DHT mode: server, client or auto (server while publicly reachable)")
	fs.StringVar(&cfg.ProtocolPrefix, "protocol-prefix", "/ipfs", "protocol prefix (/ipfs gives /ipfs/kad/1.0.0)")
	fs.StringVar(&cfg.API, "api", daemon.DefaultAPI, `HTTP API address ("off" to disable)`)
	fs.StringVar(&cfg.APIToken, "api-token", os.Getenv("KADSTORE_API_TOKEN"), "bearer token required by mutating API calls (default $KADSTORE_API_TOKEN)")
	fs.BoolVar(&cfg.NoJobs, "no-jobs", false, "disable background jobs (expiry, reprovide, replication, republish)")
	disable := fs.String("disable-jobs", "", "comma-separated jobs not to run: "+strings.Join(daemon.JobNames, ","))
	intervals := []struct {
		flag string
		v    *time.Duration
	}{
		{"reprovide-interval", &cfg.ReprovideInterval},
		{"republish-interval", &cfg.RepublishInterval},
		{"replicate-interval", &cfg.ReplicateInterval},
		{"expire-interval", &cfg.ExpireInterval},
	}
	fs.DurationVar(&cfg.ReprovideInterval, "reprovide-interval", daemon.DefaultReprovideInterval, "cycle length of reproviding own provider records")
	fs.DurationVar(&cfg.RepublishInterval, "republish-interval", daemon.DefaultRepublishInterval, "cycle length of republishing own value records")
	fs.DurationVar(&cfg.ReplicateInterval, "replicate-interval", daemon.DefaultReplicateInterval, "cycle length of replicating stored value records")
	fs.DurationVar(&cfg.ExpireInterval, "expire-interval", daemon.DefaultExpireInterval, "time between expiry runs")
	fs.IntVar(&cfg.JobPageSize, "job-page-size", daemon.DefaultJobPageSize, "records a background job holds at once")
	fs.IntVar(&cfg.JobConcurrency, "job-concurrency", daemon.DefaultJobConcurrency, "peers a background job sends to at once")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Float64Var(&cfg.PeerWriteRate, "peer-write-rate", kad.DefaultPeerWriteRate, "records a second one remote peer may have stored, after --peer-write-burst (negative: no limit)")
	var writeBehind int
	fs.IntVar(&writeBehind, "write-behind", store.DefaultWriteBehindRecords, "provider records received from peers that one store commit takes; a kill -9 loses at most twice as many received records (none of the node's own); 0: commit each before reading the next request")
	fs.IntVar(&cfg.PeerWriteBurst, "peer-write-burst", kad.DefaultPeerWriteBurst, "records one remote peer may send at once before --peer-write-rate applies")
	fs.Int64Var(&cfg.MaxRecordsPerProvider, "max-records-per-provider", daemon.DefaultMaxRecordsPerProvider, "provider records stored per provider, the node's own included (negative: no cap)")
	fs.BoolVar(&cfg.AllowPrivateAddrs, "allow-private-addrs", false, "keep loopback and private addresses of remote providers (a private network or LAN); by default they are dropped")
	fs.IntVar(&cfg.ConnsLow, "conns-low", daemon.DefaultConnsLow, "connection manager low water: trimming stops here")
	fs.IntVar(&cfg.ConnsHigh, "conns-high", daemon.DefaultConnsHigh, "connection manager high water: above it, connections are trimmed to --conns-low")
	fs.IntVar(&cfg.APIMaxConns, "api-max-conns", daemon.DefaultAPIMaxConns, "most HTTP API connections open at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Zero would mean "the default" to the daemon: say so rather than run
	// with a value the operator did not ask for. (--no-jobs and
	// --disable-jobs turn jobs off.)
	for _, iv := range intervals {
		if *iv.v <= 0 {
			fmt.Fprintf(stderr, "--%s %v: want a positive duration (--disable-jobs turns a job off)\n", iv.flag, *iv.v)
			return errUsage
		}
	}
	if cfg.JobPageSize <= 0 || cfg.JobConcurrency <= 0 {
		fmt.Fprintln(stderr, "--job-page-size and --job-concurrency: want positive numbers")
		return errUsage
	}
	switch {
	case writeBehind < 0:
		fmt.Fprintf(stderr, "--write-behind %d: want 0 (off) or a positive number of records\n", writeBehind)
		return errUsage
	case writeBehind == 0:
		cfg.WriteBehind = -1
	default:
		cfg.WriteBehind = writeBehind
	}
	if len(listen) > 0 {
		cfg.Listen = listen
	}
	if len(bootstrap) > 0 {
		cfg.Bootstrap = bootstrap
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	cfg.Logger = logger
	if *disable != "" {
		cfg.DisableJobs = strings.Split(*disable, ",")
	}

	d, err := daemon.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "peer ID: %s\n", d.Host.ID())
	for _, a := range d.Host.Addrs() {
		fmt.Fprintf(stdout, "listening on %s/p2p/%s\n", a, d.Host.ID())
	}
	if a := d.APIAddr(); a != nil {
		fmt.Fprintf(stdout, "API on http://%s\n", a)
	}
	logger.Info("node started", "peer", d.Host.ID(), "data", cfg.DataDir, "store", daemon.RedactDSN(cfg.Store), "mode", cfg.Mode)

	<-ctx.Done()
	// A second signal while shutting down exits at once.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-again
		fmt.Fprintln(stderr, "kadstore node: second signal, exiting now")
		os.Exit(1)
	}()
	logger.Info("shutting down")
	if err := d.Close(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped cleanly")
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
