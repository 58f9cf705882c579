// Package daemon assembles a running kadstore node: the data directory (its
// lock, the persistent identity, the Pebble store), the go-libp2p host, the
// Kademlia node, the background jobs and the HTTP API. `kadstore node` is a
// thin command-line front for it, and tests start it in process.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/datadir"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/jobs"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/pebblestore"
	"github.com/kadstore/kadstore/store/pgstore"
)

// Errors of Start.
var (
	// ErrLocked is returned when another process uses the data directory
	// (it is datadir.ErrLocked).
	ErrLocked = datadir.ErrLocked
	// ErrConfig is returned for an invalid configuration.
	ErrConfig = errors.New("daemon: bad configuration")
)

// DefaultBootstrap are the public Amino DHT bootstrap peers (the list
// go-libp2p-kad-dht and Kubo ship).
var DefaultBootstrap = []string{
	"/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
	"/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
	"/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
	"/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
	"/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
}

// DefaultListen are the listen addresses of a node: TCP and QUIC on 4001.
var DefaultListen = []string{
	"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1",
	"/ip6/::/tcp/4001", "/ip6/::/udp/4001/quic-v1",
}

// Config configures a daemon. Zero fields take their defaults.
type Config struct {
	// DataDir holds the identity, the Pebble store, job state and, while
	// the node runs, its API address (see internal/datadir). Default
	// datadir.Default.
	DataDir string
	// Store is "pebble" (default: DataDir/store), "memory", or a
	// postgres:// DSN.
	Store string
	// PostgresSchema is the schema a postgres:// store keeps its tables in
	// (pgstore.Options.Schema); default pgstore.DefaultSchema.
	PostgresSchema string
	// Sync makes a Pebble store fsync every write before acknowledging it
	// (pebblestore.Options.Sync): acknowledged writes then survive power
	// loss, not only a crash of the process.
	Sync bool
	// MinFreeSpace is the free disk space a Pebble store keeps in reserve:
	// below it, writes that add records fail with store.ErrNoSpace until
	// space is freed (pebblestore.Options.MinFreeSpace). 0: the default
	// (1 % of the filesystem, 16 MiB to 1 GiB); negative: no check.
	MinFreeSpace int64
	// Listen addresses; default DefaultListen.
	Listen []string
	// Bootstrap peers; nil means DefaultBootstrap, an empty non-nil slice none.
	Bootstrap []string
	// Mode is "server", "client" or "auto" (default).
	Mode string
	// ProtocolPrefix; default /ipfs (protocol /ipfs/kad/1.0.0).
	ProtocolPrefix string
	// API is the HTTP API's listen address; default DefaultAPI. "off"
	// disables it. While the node runs, the address it listens on is
	// published in the data directory for the tools (datadir.APIFile).
	API string
	// APIToken, if set, guards mutating API calls.
	APIToken string
	// NoJobs disables the background jobs (expiry, reprovide, replication,
	// republish).
	NoJobs bool
	// DisableJobs names jobs not to run, among JobNames.
	DisableJobs []string
	// ReprovideInterval etc. are the jobs' intervals; zero takes the
	// defaults (DefaultReprovideInterval, …), and negative is an error.
	ReprovideInterval, ReplicateInterval, RepublishInterval, ExpireInterval time.Duration
	// JobPageSize (records held at once, default 1000) and JobConcurrency
	// (peers sent to at once, default 16) tune the walking jobs.
	JobPageSize, JobConcurrency int
	// KadOptions are passed to kad.New after the daemon's own.
	KadOptions []kad.Option
	Logger     *slog.Logger

	// PeerWriteRate and PeerWriteBurst set the per-peer write admission
	// (kad.PeerWriteLimit): records a second one remote peer may have stored,
	// after a burst. Zero takes kad's defaults (1 000/s, burst 10 000); a
	// negative rate turns the limit off.
	PeerWriteRate  float64
	PeerWriteBurst int
	// WriteBehind is the most provider records received from peers that one
	// store commit takes (kad.WriteBehind): zero means
	// store.DefaultWriteBehindRecords, negative commits each record before
	// the next request is read. A kill -9 loses at most twice that many
	// received records, and none of the node's own.
	WriteBehind int
	// MaxRecordsPerProvider caps the provider records stored per provider,
	// the node's own included (store.Limits.MaxRecordsPerProvider). Zero
	// means DefaultMaxRecordsPerProvider; negative turns the cap off.
	MaxRecordsPerProvider int64
	// AllowPrivateAddrs keeps loopback and private addresses of remote
	// providers. By default a node is in the public network and drops them,
	// as go-libp2p-kad-dht's WAN DHT does; set it in a private network or a
	// LAN.
	AllowPrivateAddrs bool
	// ConnsLow and ConnsHigh are the connection manager's water marks:
	// above high, connections are closed down to low. Default 600 and 900.
	ConnsLow, ConnsHigh int
	// APIMaxConns caps the HTTP API's open connections; default
	// DefaultAPIMaxConns.
	APIMaxConns int
}

// DefaultMaxRecordsPerProvider is the default cap on the provider records of
// one provider. The Amino DHT has about 3 500 servers and stores each key on
// 20, so a server holds about 20/3 500 = 1/175 of a provider's keys: a
// provider of 175 M keys (87 M if the keyspace falls unevenly, 2:1) stays
// below it, while one peer ID can fill at most 1 % of the store's default
// 100 M records. It applies to the node's own records too.
const DefaultMaxRecordsPerProvider = 1_000_000

// Defaults of Config.
const (
	// DefaultAPI is the HTTP API's listen address.
	DefaultAPI = "127.0.0.1:5080"
	// DefaultReprovideInterval and DefaultRepublishInterval are the cycles of
	// announcing the node's own records again, inside their 48 h life.
	DefaultReprovideInterval = 22 * time.Hour
	DefaultRepublishInterval = 22 * time.Hour
	// DefaultReplicateInterval is the cycle of replicating stored values.
	DefaultReplicateInterval = time.Hour
	// DefaultExpireInterval is the time between expiry runs.
	DefaultExpireInterval = 10 * time.Minute
	// DefaultJobPageSize and DefaultJobConcurrency tune the walking jobs.
	DefaultJobPageSize    = 1000
	DefaultJobConcurrency = 16
)

// Names of the background jobs, as Config.DisableJobs and /v1/stats name them.
const (
	JobExpire    = "expire"
	JobReprovide = "reprovide"
	JobReplicate = "replicate"
	JobRepublish = "republish"
)

// JobNames are the background jobs.
var JobNames = []string{JobExpire, JobReprovide, JobReplicate, JobRepublish}

// Daemon is a running node.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	lock     *datadir.Lock
	Store    store.Store
	Host     host.Host
	Node     *kad.Node
	Registry *prometheus.Registry
	apiLn    net.Listener
	apiSrv   *http.Server

	expirer    *jobs.Expirer
	reprovider *jobs.Reprovider
	replicator *jobs.Replicator
	republish  *jobs.Replicator

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Start opens the data directory and starts the node. On error everything
// already opened is closed again.
func Start(ctx context.Context, cfg Config) (d *Daemon, err error) {
	p, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	d = &Daemon{cfg: cfg, log: cfg.Logger, Registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			d.Close()
			d = nil
		}
	}()
	key, created, err := d.openDataDir(ctx)
	if err != nil {
		return d, err
	}
	if err := d.startNode(key, p); err != nil {
		return d, err
	}
	if created {
		d.log.Info("created a new identity", "peer", d.Host.ID())
	}

	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if !cfg.NoJobs {
		d.startJobs(runCtx)
	}
	if cfg.API != "off" {
		if err := d.startAPI(); err != nil {
			return d, err
		}
		// Last: a tool that finds the address finds a node that serves.
		if err := d.lock.PublishAPI(d.apiLn.Addr()); err != nil {
			return d, fmt.Errorf("daemon: publishing the API address: %w", err)
		}
	}
	logMode(d.log, p.mode, cfg.Listen)
	d.wg.Go(func() {
		if len(p.bootstrap) == 0 {
			d.log.Info("no bootstrap peers: the node joins a network only when peers connect to it")
			return
		}
		// A failure is logged by the node, which retries with backoff.
		_ = d.Node.Bootstrap(runCtx)
	})
	return d, nil
}

// parsed is what Config.prepare parses out of a configuration.
type parsed struct {
	mode      kad.ModeOpt
	bootstrap []peer.AddrInfo
}

// prepare fills the zero fields of cfg with their defaults and checks it.
// Every log line of the daemon and of what it builds goes through RedactDSN
// from then on: a pgx error may quote the connection string.
func (cfg *Config) prepare() (parsed, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = datadir.Default
	}
	if cfg.Listen == nil {
		cfg.Listen = DefaultListen
	}
	if cfg.Bootstrap == nil {
		cfg.Bootstrap = DefaultBootstrap
	}
	if cfg.API == "" {
		cfg.API = DefaultAPI
	}
	if cfg.ProtocolPrefix == "" {
		cfg.ProtocolPrefix = "/ipfs"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = redactLogger(cfg.Logger)
	if err := ensureJobDefaults(cfg); err != nil {
		return parsed{}, err
	}
	for _, j := range cfg.DisableJobs {
		if !slices.Contains(JobNames, j) {
			return parsed{}, fmt.Errorf("%w: unknown job %q (jobs: %s)", ErrConfig, j, strings.Join(JobNames, ", "))
		}
	}
	var p parsed
	var err error
	if p.mode, err = parseMode(cfg.Mode); err != nil {
		return parsed{}, err
	}
	if p.bootstrap, err = parsePeers(cfg.Bootstrap); err != nil {
		return parsed{}, err
	}
	return p, nil
}

// openDataDir locks the data directory, loads (or creates) the identity and
// opens the store, with its metrics.
func (d *Daemon) openDataDir(ctx context.Context) (key crypto.PrivKey, created bool, err error) {
	if d.lock, err = datadir.New(d.cfg.DataDir).Lock(); err != nil {
		return nil, false, err
	}
	// An address left by a node that was killed is not ours.
	if err := d.lock.WithdrawAPI(); err != nil {
		return nil, false, err
	}
	key, self, created, err := d.lock.Dir().Identity()
	if err != nil {
		return nil, false, err
	}
	if d.Store, err = openStore(ctx, d.cfg, d.lock, self, d.log); err != nil {
		return nil, false, err
	}
	d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newRecordsCollector(d.Store))
	if hr, ok := d.Store.(store.HealthReporter); ok {
		d.Registry.MustRegister(healthCollectors(hr)...)
		if h := hr.Health(); h.Degraded() {
			d.log.Warn("the store opened degraded: see /healthz and /v1/stats", "problems", h.Problems)
		}
	}
	return key, created, nil
}

// startNode starts the libp2p host with key and the Kademlia node on it.
func (d *Daemon) startNode(key crypto.PrivKey, p parsed) error {
	cfg := d.cfg
	hostOpts, err := d.hostOptions(protocol.ID(cfg.ProtocolPrefix) + "/kad/1.0.0")
	if err != nil {
		return err
	}
	d.Host, err = libp2p.New(append([]libp2p.Option{libp2p.Identity(key), libp2p.ListenAddrStrings(cfg.Listen...)}, hostOpts...)...)
	if err != nil {
		return fmt.Errorf("daemon: libp2p host: %w", err)
	}
	opts := []kad.Option{
		kad.Mode(p.mode),
		kad.ProtocolPrefix(protocol.ID(cfg.ProtocolPrefix)),
		kad.Registerer(d.Registry),
		kad.Logger(d.log),
		kad.BootstrapPeers(p.bootstrap...),
		kad.MaxProviderAddrs(storeLimits(cfg).MaxAddrs),
	}
	if cfg.PeerWriteRate != 0 || cfg.PeerWriteBurst != 0 {
		rate, burst := cfg.PeerWriteRate, cfg.PeerWriteBurst
		if rate == 0 {
			rate = kad.DefaultPeerWriteRate
		}
		if burst == 0 {
			burst = kad.DefaultPeerWriteBurst
		}
		opts = append(opts, kad.PeerWriteLimit(rate, burst))
	}
	if cfg.WriteBehind != 0 {
		opts = append(opts, kad.WriteBehind(max(cfg.WriteBehind, 0)))
	}
	if !cfg.AllowPrivateAddrs {
		opts = append(opts, kad.AddressFilter(kad.PublicAddrs))
	}
	d.Node, err = kad.New(d.Host, d.Store, append(opts, cfg.KadOptions...)...)
	return err
}

func parseMode(s string) (kad.ModeOpt, error) {
	switch s {
	case "", "auto":
		return kad.ModeAuto, nil
	case "server":
		return kad.ModeServer, nil
	case "client":
		return kad.ModeClient, nil
	}
	return 0, fmt.Errorf("%w: mode %q: want server, client or auto", ErrConfig, s)
}

func parsePeers(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		if s == "none" {
			continue
		}
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap %q: %v", ErrConfig, s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap %q: %v", ErrConfig, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// openStore opens the configured store. A Pebble store indexes the node's own
// records by peer, so that the reprovider's scan of them reads only them.
// On error the store is a nil interface (never a nil *pebblestore.Store in a
// non-nil store.Store, which Close would call), and the error names the
// store with its password redacted.
func openStore(ctx context.Context, cfg Config, lock *datadir.Lock, self peer.ID, log *slog.Logger) (store.Store, error) {
	sopts := store.Options{Logger: log}
	sopts.Limits = storeLimits(cfg)
	switch {
	case cfg.Store == "" || cfg.Store == "pebble":
		dir := lock.Dir().StorePath()
		s, err := pebblestore.Open(dir, datadir.StoreOptions(self, pebblestore.Options{Options: sopts, Sync: cfg.Sync, MinFreeSpace: cfg.MinFreeSpace}))
		if errors.Is(err, pebblestore.ErrLocked) {
			return nil, fmt.Errorf("%w: %v", ErrLocked, err)
		}
		if err != nil {
			return nil, fmt.Errorf("daemon: opening the Pebble store in %s: %w", dir, err)
		}
		return s, nil
	case cfg.Store == "memory":
		return memstore.New(sopts), nil
	case strings.HasPrefix(cfg.Store, "postgres://") || strings.HasPrefix(cfg.Store, "postgresql://"):
		s, err := pgstore.Open(ctx, cfg.Store, pgstore.Options{Options: sopts, Schema: cfg.PostgresSchema})
		if err != nil {
			// pgx errors may quote the connection string.
			return nil, RedactError(fmt.Errorf("daemon: opening the PostgreSQL store %q: %w", RedactDSN(cfg.Store), err))
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: store %q: want pebble, memory or postgres://…", ErrConfig, RedactDSN(cfg.Store))
}

// storeLimits are the store's limits: defaults, and the per-provider cap.
func storeLimits(cfg Config) store.Limits {
	l := store.Limits{MaxRecordsPerProvider: cfg.MaxRecordsPerProvider}
	if l.MaxRecordsPerProvider == 0 {
		l.MaxRecordsPerProvider = DefaultMaxRecordsPerProvider
	}
	l.EnsureDefaults()
	return l
}

// logMode says which DHT mode the node runs in, why, and what to do about it.
func logMode(log *slog.Logger, mode kad.ModeOpt, listen []string) {
	switch mode {
	case kad.ModeAuto:
		log.Warn("DHT mode auto: the node serves the DHT only once AutoNAT finds it publicly reachable, "+
			"which never happens on a LAN or on loopback; run with --mode server there (or behind a forwarded port)",
			"listen", listen)
	case kad.ModeClient:
		log.Info("DHT mode client: the node queries the DHT and stores nothing for others")
	case kad.ModeServer:
		log.Info("DHT mode server: the node serves the DHT on its listen addresses", "listen", listen)
	}
}

// ensureJobDefaults fills the jobs' zero settings with their defaults and
// refuses negative ones.
func ensureJobDefaults(cfg *Config) error {
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{JobReprovide, &cfg.ReprovideInterval, DefaultReprovideInterval},
		{JobRepublish, &cfg.RepublishInterval, DefaultRepublishInterval},
		{JobReplicate, &cfg.ReplicateInterval, DefaultReplicateInterval},
		{JobExpire, &cfg.ExpireInterval, DefaultExpireInterval},
	} {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0:
			return fmt.Errorf("%w: %s interval %v: want a positive duration", ErrConfig, f.name, *f.v)
		}
	}
	if cfg.JobPageSize == 0 {
		cfg.JobPageSize = DefaultJobPageSize
	}
	if cfg.JobConcurrency == 0 {
		cfg.JobConcurrency = DefaultJobConcurrency
	}
	if cfg.JobPageSize < 0 || cfg.JobConcurrency < 0 {
		return fmt.Errorf("%w: job page size %d and concurrency %d: want positive numbers", ErrConfig, cfg.JobPageSize, cfg.JobConcurrency)
	}
	return nil
}

func (d *Daemon) startJobs(ctx context.Context) {
	expired := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "kadstore", Subsystem: "jobs", Name: "expired_records_total",
		Help: "Records removed by the expiry job.",
	})
	d.Registry.MustRegister(expired)
	state := &jobs.FileState{Path: d.lock.Dir().JobStatePath()}
	// The jobs send each record to the node's k closest peers and refresh
	// the node's own records for as long as the node keeps records.
	walk := func(interval, ttl time.Duration) jobs.WalkOptions {
		return jobs.WalkOptions{Interval: interval, State: state, Logger: d.log,
			PageSize: d.cfg.JobPageSize, Concurrency: d.cfg.JobConcurrency,
			K: d.Node.BucketSize(), TTL: ttl}
	}
	d.expirer = jobs.NewExpirer(d.Store, jobs.ExpirerOptions{
		Interval: d.cfg.ExpireInterval, Logger: d.log, OnExpired: func(n int) { expired.Add(float64(n)) },
	})
	d.reprovider = jobs.NewReprovider(d.Store, d.Node, walk(d.cfg.ReprovideInterval, d.Node.ProviderTTL()))
	d.replicator = jobs.NewReplicator(d.Store, d.Node, jobs.ReplicatorOptions{WalkOptions: walk(d.cfg.ReplicateInterval, d.Node.RecordTTL())})
	d.republish = jobs.NewReplicator(d.Store, d.Node, jobs.ReplicatorOptions{Own: true, WalkOptions: walk(d.cfg.RepublishInterval, d.Node.RecordTTL())})
	for name, run := range map[string]func(context.Context){
		JobExpire: d.expirer.Run, JobReprovide: d.reprovider.Run,
		JobReplicate: d.replicator.Run, JobRepublish: d.republish.Run,
	} {
		if slices.Contains(d.cfg.DisableJobs, name) {
			d.log.Info("background job disabled", "job", name)
			continue
		}
		d.wg.Go(func() { run(ctx) })
	}
}

// Jobs returns the progress of each background job.
func (d *Daemon) Jobs() map[string]jobs.Progress {
	if d.expirer == nil {
		return nil
	}
	all := map[string]jobs.Progress{
		JobExpire:    d.expirer.Progress(),
		JobReprovide: d.reprovider.Progress(),
		JobReplicate: d.replicator.Progress(),
		JobRepublish: d.republish.Progress(),
	}
	for _, name := range d.cfg.DisableJobs {
		delete(all, name)
	}
	return all
}

func (d *Daemon) startAPI() error {
	ln, err := net.Listen("tcp", d.cfg.API)
	if err != nil {
		return fmt.Errorf("daemon: API listen on %s: %w", d.cfg.API, err)
	}
	d.apiLn = ln
	h := api.New(api.Config{
		Store: d.Store, Node: nodeAdapter{d.Node}, Token: d.cfg.APIToken,
		Gatherer: d.Registry, Registerer: d.Registry, Logger: d.log,
		Jobs: func() any { return d.Jobs() },
	})
	maxConns := d.cfg.APIMaxConns
	if maxConns <= 0 {
		maxConns = DefaultAPIMaxConns
	}
	d.apiSrv = newAPIServer(h)
	d.wg.Go(func() {
		if err := d.apiSrv.Serve(netutil.LimitListener(ln, maxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("API server stopped", "err", err)
		}
	})
	return nil
}

// APIAddr is the address the API listens on, nil if it is off.
func (d *Daemon) APIAddr() net.Addr {
	if d.apiLn == nil {
		return nil
	}
	return d.apiLn.Addr()
}

// Close stops accepting requests, lets in-flight API requests finish (up to
// 10 s), stops the jobs and the node, and flushes and closes the store.
//
// Close is safe on a daemon that Start left half-built (it closes only what
// was opened) and on a nil *Daemon.
func (d *Daemon) Close() error {
	if d == nil {
		return nil
	}
	d.once.Do(func() {
		var errs []error
		if d.lock != nil {
			// First: from now on, tools wait for the lock rather than
			// call an API that is going away.
			errs = append(errs, d.lock.WithdrawAPI())
		}
		if d.apiSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			errs = append(errs, d.apiSrv.Shutdown(ctx))
			cancel()
		}
		if d.cancel != nil {
			d.cancel()
		}
		if d.Node != nil {
			errs = append(errs, d.Node.Close())
		}
		d.wg.Wait()
		if d.Host != nil {
			errs = append(errs, d.Host.Close())
		}
		if d.Store != nil {
			errs = append(errs, d.Store.Close())
		}
		errs = append(errs, d.lock.Unlock())
		d.err = errors.Join(errs...)
	})
	return d.err
}
