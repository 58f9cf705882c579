// Package sim simulates a kadstore DHT of thousands of nodes in one process,
// to check the region reprovider (kad/jobs) and lookups at scale. It backs
// `kadstore simulate`.
//
// Every node is a real kad.Node with its own in-memory store (memstore: a
// Pebble store per node would cost a directory, file handles and a block
// cache each, which thousands of nodes cannot afford, and the store is not
// what is measured). The nodes talk over go-libp2p's mocknet, an in-process
// network with no socket per node, so the real protocol code runs end to end:
// streams, framing, the server's handlers, write admission and the store.
// Links between two peers are made on their first dial (see fabric), so the
// memory grows with the pairs that talk, not with N².
//
// A run builds the network, gives Providers nodes the Keys own keys, runs one
// cycle of the real jobs.Reprovider on each of them at once (or, with Legacy,
// one closest-peers lookup per key followed by ADD_PROVIDER to the peers it
// found, as go-libp2p-kad-dht's legacy reprovider does), optionally with
// churn during the cycle, waits for the unacknowledged ADD_PROVIDER messages
// to be stored, and then checks:
//
//   - placement: for every key, its true k closest live nodes (all live nodes
//     but its provider, sorted by XOR distance), and whether each holds the
//     record in its store;
//   - lookups: FindProviders from random live nodes for random keys.
//
// Routing tables. By default (FillDirect) each node's go-libp2p-kbucket
// routing table is filled directly with every other node, offered in a
// random order, as a converged Kademlia node's table is: its near buckets
// hold every peer there is, each far bucket the first k it met. Filling it by
// real bootstrap lookups (FillBootstrap) costs two refreshes of every node, a
// lookup for each bucket each: 109 s at a thousand nodes on two cores against
// one, and more than twice the memory (the connections and idle streams the
// lookups leave), for tables of the same sizes and a reprovide cycle of the
// same lookups (docs/BENCHMARKS.md). The reprovide cycle and every lookup
// after it run over the network either way. Nodes that join during the churn always bootstrap for real,
// from a random live node.
package sim

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/bench"
	"github.com/kadstore/kadstore/internal/workers"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/jobs"
	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

// Fill selects how routing tables are built before the cycle.
type Fill string

// The ways to fill routing tables.
const (
	// FillDirect adds every other node to each node's routing table, in a
	// random order (see the package doc).
	FillDirect Fill = "direct"
	// FillBootstrap bootstraps every node from the first, then refreshes
	// every routing table twice, through real lookups.
	FillBootstrap Fill = "bootstrap"
)

// Options configure a simulation. Zero fields take their defaults.
type Options struct {
	// Nodes in the network at the start. Default 200.
	Nodes int
	// Keys provided in all, spread evenly over the providers. Default 10 000.
	Keys int
	// Providers is how many nodes own keys. Default 10.
	Providers int
	// Churn is the fraction of Nodes that leave, and as many that join,
	// during the cycle, spread over it by the cycle's progress. Providers
	// never leave. Default 0.
	Churn float64
	// Latency of every mocknet link, each way. Default 0.
	Latency time.Duration
	// Seed makes the peer identities, keys, providers, routing-table fill,
	// churn choices and lookups reproducible (the network's timing is not).
	Seed uint64
	// Legacy reprovides with one lookup per key instead of the region
	// reprovider.
	Legacy bool
	// LegacyConcurrency is the keys in flight per provider with Legacy.
	// Default 10.
	LegacyConcurrency int
	// Finds is how many FindProviders lookups check the result. Default
	// 1 000 (at most Keys).
	Finds int
	// Fill selects how routing tables are built. Default FillDirect.
	Fill Fill
	// K is the bucket size and replication factor. Default 20.
	K int
	// Logger receives progress; default discards. The nodes' own logs are
	// discarded.
	Logger *slog.Logger
}

// ErrOptions is returned (wrapped) for options that cannot be simulated.
var ErrOptions = errors.New("sim: invalid options")

func (o *Options) ensureDefaults() error {
	if o.Nodes == 0 {
		o.Nodes = 200
	}
	if o.Keys == 0 {
		o.Keys = 10_000
	}
	if o.Providers == 0 {
		o.Providers = 10
	}
	if o.LegacyConcurrency <= 0 {
		o.LegacyConcurrency = 10
	}
	if o.Finds == 0 {
		o.Finds = 1000
	}
	o.Finds = min(o.Finds, o.Keys)
	if o.Fill == "" {
		o.Fill = FillDirect
	}
	if o.K == 0 {
		o.K = kad.DefaultBucketSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Nodes < 2:
		return fmt.Errorf("%w: %d nodes: need at least 2", ErrOptions, o.Nodes)
	case o.Keys < 1:
		return fmt.Errorf("%w: %d keys", ErrOptions, o.Keys)
	case o.Providers < 1 || o.Providers > o.Nodes:
		return fmt.Errorf("%w: %d providers for %d nodes", ErrOptions, o.Providers, o.Nodes)
	case o.Churn < 0 || o.Churn >= 1:
		return fmt.Errorf("%w: churn %v: want a fraction in [0, 1)", ErrOptions, o.Churn)
	case o.Latency < 0:
		return fmt.Errorf("%w: latency %v", ErrOptions, o.Latency)
	case o.Finds < 0:
		return fmt.Errorf("%w: %d finds", ErrOptions, o.Finds)
	case o.Fill != FillDirect && o.Fill != FillBootstrap:
		return fmt.Errorf("%w: fill %q: want %q or %q", ErrOptions, o.Fill, FillDirect, FillBootstrap)
	case o.K < 1:
		return fmt.Errorf("%w: k %d", ErrOptions, o.K)
	}
	if left := int(o.Churn * float64(o.Nodes)); o.Nodes-left < o.Providers+1 {
		return fmt.Errorf("%w: churn %v leaves too few nodes besides the %d providers", ErrOptions, o.Churn, o.Providers)
	}
	return nil
}

// Result is what a simulation measured. The JSON names are those of
// `kadstore simulate --json`.
type Result struct {
	Seed      uint64  `json:"seed"`
	Nodes     int     `json:"nodes"`
	Keys      int     `json:"keys"`
	Providers int     `json:"providers"`
	Legacy    bool    `json:"legacy"`
	Fill      Fill    `json:"fill"`
	Churn     float64 `json:"churn"`
	LatencyMS float64 `json:"latency_ms"`
	K         int     `json:"k"`
	// Left and Joined count the nodes that left and joined during the cycle;
	// LiveNodes is the network's size after it.
	Left      int `json:"left"`
	Joined    int `json:"joined"`
	LiveNodes int `json:"live_nodes"`
	// RegionBits is the median of the region prefix lengths the providers'
	// reprovider chose (each estimates the network size on its own);
	// RegionBitsMin and RegionBitsMax are their range. 0 with Legacy.
	RegionBits    int `json:"region_bits"`
	RegionBitsMin int `json:"region_bits_min"`
	RegionBitsMax int `json:"region_bits_max"`
	// ReprovideLookups counts the closest-peers lookups of the cycle, over
	// all providers; LookupsPerKey is that per key.
	ReprovideLookups int64   `json:"reprovide_lookups"`
	LookupsPerKey    float64 `json:"lookups_per_key"`
	// RecordsSent counts ADD_PROVIDER records written to peers;
	// RecordsStored those the receiving nodes stored; SendErrors the
	// failures the cycle counted (lookups and sends).
	RecordsSent   int64 `json:"records_sent"`
	RecordsStored int64 `json:"records_stored"`
	SendErrors    int64 `json:"send_errors"`
	// StreamsOpened counts the streams the nodes opened during the cycle.
	StreamsOpened int64 `json:"streams_opened"`
	// ClosestPairs counts (key, one of its k closest live nodes) pairs;
	// ClosestCoverage is the fraction of them whose node holds the record.
	ClosestPairs    int64   `json:"closest_pairs"`
	ClosestCoverage float64 `json:"closest_coverage"`
	// JoinerPairs counts the pairs whose node joined during the cycle, and
	// JoinerCoverage is the fraction of them holding the record (a joiner
	// gets a key's record only if it joined before the key's region was
	// walked).
	JoinerPairs    int64   `json:"joiner_pairs"`
	JoinerCoverage float64 `json:"joiner_coverage"`
	// Finds counts FindProviders lookups, Found those that found the
	// provider, FindSuccess the fraction.
	Finds       int     `json:"finds"`
	Found       int     `json:"found"`
	FindSuccess float64 `json:"find_success"`
	// Phase durations.
	BuildSeconds   float64 `json:"build_seconds"`
	CycleSeconds   float64 `json:"cycle_seconds"`
	DeliverSeconds float64 `json:"deliver_seconds"`
	CheckSeconds   float64 `json:"check_seconds"`
	FindSeconds    float64 `json:"find_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
	// Links counts the mocknet links made (pairs of nodes that talked);
	// Goroutines is the process's count right after the cycle.
	Links      int   `json:"links"`
	Goroutines int   `json:"goroutines"`
	PeakRSS    int64 `json:"peak_rss_bytes"`
	// Received counts the messages the live nodes received, by "TYPE
	// outcome" (kadstore_kad_messages_received_total summed over the
	// nodes), and Rejected the records they refused, by reason
	// (kadstore_kad_records_rejected_total). Nodes that left are not
	// counted.
	Received map[string]int64 `json:"messages_received"`
	Rejected map[string]int64 `json:"records_rejected,omitempty"`
}

type node struct {
	id    peer.ID
	kk    record.KadKey
	addrs []ma.Multiaddr
	h     *simHost
	st    *countingStore
	kad   *kad.Node
	keys  [][]byte // own keys (providers only)
	prov  bool
	alive bool
	// joiner is set on the nodes that joined during the cycle.
	joiner bool
}

// countingStore counts the provider records a node stores for other peers.
// On a provider, advance (if set) is told how many records each Scan page
// holds: the reprovider takes up the keys page by page.
type countingStore struct {
	store.Store
	self     peer.ID
	received *atomic.Int64
	advance  func(n int)
}

func (s *countingStore) Scan(ctx context.Context, opts store.ScanOptions) (store.Page, error) {
	page, err := s.Store.Scan(ctx, opts)
	if err == nil && s.advance != nil && opts.Kind == store.Providers {
		s.advance(len(page.Providers))
	}
	return page, err
}

func (s *countingStore) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	err := s.Store.AddProviders(ctx, recs...)
	if err == nil {
		n := int64(0)
		for _, r := range recs {
			if r.Provider != s.self {
				n++
			}
		}
		s.received.Add(n)
	}
	return err
}

// sim is one run's state.
type sim struct {
	opts     Options
	log      *slog.Logger
	quiet    *slog.Logger
	f        *fabric
	rng      *mrand.Rand
	keyRand  *mrand.ChaCha8
	received atomic.Int64
	churn    *churner
	metrics  *prometheus.Registry // every node's, labelled by node

	mu    sync.Mutex // guards nodes' alive flags and the slice while churning
	nodes []*node
}

// blackhole is the IPv6 prefix of the nodes' addresses, as mocknet uses:
// nothing is ever sent to them, but if it were it would go nowhere.
var blackhole = net.ParseIP("100::")

func (s *sim) newNode(bootstrap []peer.AddrInfo) (*node, error) {
	sk, _, err := crypto.GenerateEd25519Key(s.keyRand)
	if err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		return nil, err
	}
	ip := slices.Clone(blackhole)
	suffix := []byte(id)[len(id)-8:]
	copy(ip[net.IPv6len-len(suffix):], suffix)
	addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip6/%s/tcp/4242", ip))
	if err != nil {
		return nil, err
	}
	h, err := s.f.mn.AddPeer(sk, addr)
	if err != nil {
		return nil, err
	}
	n := &node{id: id, kk: jobs.PeerKey(id), addrs: []ma.Multiaddr{addr}, h: &simHost{Host: h, f: s.f}}
	n.st = &countingStore{Store: memstore.New(store.Options{Logger: s.quiet}), self: id, received: &s.received}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"node": id.String()}, s.metrics)
	n.kad, err = kad.New(n.h, n.st, kad.Mode(kad.ModeServer), kad.RefreshInterval(0), kad.BucketSize(s.opts.K),
		kad.Logger(s.quiet), kad.BootstrapPeers(bootstrap...), kad.Registerer(reg))
	if err != nil {
		h.Close()
		n.st.Close()
		return nil, err
	}
	n.alive = true
	s.f.setAlive(id, true)
	return n, nil
}

func (n *node) stop() {
	n.kad.Close()
	n.h.Host.Close()
	n.st.Close()
}

// Run builds the network, runs one reprovide cycle, checks it and tears the
// network down.
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := opts.ensureDefaults(); err != nil {
		return Result{}, err
	}
	s := &sim{
		opts:    opts,
		log:     opts.Logger,
		quiet:   slog.New(slog.DiscardHandler),
		f:       newFabric(mocknet.LinkOptions{Latency: opts.Latency}),
		rng:     mrand.New(mrand.NewPCG(opts.Seed, 0x5eed)),
		keyRand: mrand.NewChaCha8(seed32(opts.Seed)),
		metrics: prometheus.NewRegistry(),
	}
	defer s.teardown()
	return s.run(ctx)
}

func seed32(seed uint64) (b [32]byte) {
	binary.LittleEndian.PutUint64(b[:], seed)
	copy(b[8:], "kadstore simulate")
	return b
}

func (s *sim) run(ctx context.Context) (Result, error) {
	o := s.opts
	res := Result{Seed: o.Seed, Nodes: o.Nodes, Keys: o.Keys, Providers: o.Providers, Legacy: o.Legacy, Fill: o.Fill,
		Churn: o.Churn, LatencyMS: float64(o.Latency) / float64(time.Millisecond), K: o.K}
	start := time.Now()

	if err := s.build(ctx); err != nil {
		return res, fmt.Errorf("building the network: %w", err)
	}
	provs := s.giveKeys()
	if err := s.storeOwn(ctx, provs); err != nil {
		return res, err
	}
	res.BuildSeconds = time.Since(start).Seconds()
	s.log.Info("network built", "nodes", o.Nodes, "fill", o.Fill, "seconds", round(res.BuildSeconds), "links", s.f.links())

	// The cycle, with churn in step with it.
	streams0 := s.f.streams.Load()
	cycleStart := time.Now()
	s.churn = s.newChurner(ctx)
	for _, p := range provs {
		p.st.advance = s.churn.advance
	}
	var err error
	if o.Legacy {
		err = s.legacyCycle(ctx, provs, &res)
	} else {
		err = s.regionCycle(ctx, provs, &res)
	}
	res.CycleSeconds = time.Since(cycleStart).Seconds()
	res.Goroutines = runtime.NumGoroutine()
	res.StreamsOpened = s.f.streams.Load() - streams0
	res.Left, res.Joined = s.churn.wait()
	if err != nil {
		return res, fmt.Errorf("reprovide cycle: %w", err)
	}
	res.LookupsPerKey = float64(res.ReprovideLookups) / float64(o.Keys)
	s.log.Info("cycle done", "seconds", round(res.CycleSeconds), "lookups", res.ReprovideLookups,
		"lookups_per_key", res.LookupsPerKey, "records_sent", res.RecordsSent, "errors", res.SendErrors,
		"region_bits", res.RegionBits, "left", res.Left, "joined", res.Joined)

	t := time.Now()
	res.RecordsStored = s.waitDelivered(ctx, res.RecordsSent)
	res.DeliverSeconds = time.Since(t).Seconds()

	t = time.Now()
	live := s.live()
	res.LiveNodes = len(live)
	cov := s.coverage(ctx, provs, live)
	res.ClosestPairs, res.ClosestCoverage = cov.pairs, cov.frac()
	res.JoinerPairs, res.JoinerCoverage = cov.joinerPairs, cov.joinerFrac()
	res.CheckSeconds = time.Since(t).Seconds()
	s.log.Info("placement checked", "pairs", res.ClosestPairs, "closest_coverage", res.ClosestCoverage,
		"joiner_pairs", res.JoinerPairs, "joiner_coverage", res.JoinerCoverage,
		"records_stored", res.RecordsStored, "seconds", round(res.CheckSeconds))

	t = time.Now()
	res.Finds, res.Found = s.finds(ctx, provs, live)
	if res.Finds > 0 {
		res.FindSuccess = float64(res.Found) / float64(res.Finds)
	}
	res.FindSeconds = time.Since(t).Seconds()
	s.log.Info("lookups checked", "finds", res.Finds, "found", res.Found, "seconds", round(res.FindSeconds))
	res.Links = s.f.links()
	res.Received, res.Rejected = s.messageCounts()
	if n := res.Received["ADD_PROVIDER "+"rejected"] + res.Received["ADD_PROVIDER store_timeout"]; n > 0 {
		s.log.Warn("nodes refused ADD_PROVIDER records", "received", res.Received, "rejected", res.Rejected)
	}
	res.PeakRSS = bench.PeakRSS()
	res.TotalSeconds = time.Since(start).Seconds()
	return res, ctx.Err()
}

func round(x float64) float64 { return float64(int64(x*1000)) / 1000 }

// build starts the nodes and fills their routing tables.
func (s *sim) build(ctx context.Context) error {
	o := s.opts
	s.nodes = make([]*node, 0, o.Nodes)
	var boot []peer.AddrInfo
	for i := range o.Nodes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := s.newNode(boot)
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		s.nodes = append(s.nodes, n)
		if i == 0 && o.Fill == FillBootstrap {
			boot = []peer.AddrInfo{{ID: n.id, Addrs: n.addrs}}
		}
		if (i+1)%1000 == 0 {
			s.log.Info("nodes started", "nodes", i+1)
		}
	}
	s.log.Info("nodes started", "nodes", len(s.nodes))
	if o.Fill == FillBootstrap {
		for round := range 2 {
			var failed atomic.Int64
			err := workers.Run(ctx, len(s.nodes)-1, 16, func(ctx context.Context, i int) error {
				if err := s.nodes[i+1].kad.RefreshRoutingTable(ctx); err != nil {
					failed.Add(1)
				}
				return nil
			})
			if err != nil {
				return err
			}
			s.log.Info("routing tables refreshed", "round", round+1, "failed", failed.Load())
		}
	} else {
		s.fillDirect(ctx)
	}
	sizes := make([]int, len(s.nodes))
	for i, n := range s.nodes {
		sizes[i] = n.kad.RoutingTable().Size()
	}
	slices.Sort(sizes)
	s.log.Info("routing tables filled", "min", sizes[0], "median", sizes[len(sizes)/2], "max", sizes[len(sizes)-1])
	return ctx.Err()
}

// fillDirect offers every other node to each node's routing table, in a
// random order of its own, and records the addresses of those it keeps.
func (s *sim) fillDirect(ctx context.Context) {
	seeds := make([]uint64, len(s.nodes))
	for i := range seeds {
		seeds[i] = s.rng.Uint64()
	}
	_ = workers.Run(ctx, len(s.nodes), runtime.GOMAXPROCS(0), func(ctx context.Context, i int) error {
		n := s.nodes[i]
		rng := mrand.New(mrand.NewPCG(seeds[i], 1))
		order := rng.Perm(len(s.nodes))
		rt := n.kad.RoutingTable()
		ps := n.h.Peerstore()
		for _, j := range order {
			if j == i {
				continue
			}
			q := s.nodes[j]
			if ok, _ := rt.TryAddPeer(q.id, true, false); ok {
				ps.AddAddrs(q.id, q.addrs, peerstore.PermanentAddrTTL)
			}
		}
		return ctx.Err()
	})
}

// giveKeys picks the providers and deals them the keys: key i goes to
// provider i mod Providers.
func (s *sim) giveKeys() []*node {
	o := s.opts
	perm := s.rng.Perm(len(s.nodes))[:o.Providers]
	provs := make([]*node, o.Providers)
	for i, j := range perm {
		provs[i] = s.nodes[j]
		provs[i].prov = true
	}
	buf := make([]byte, 16)
	for i := range o.Keys {
		binary.BigEndian.PutUint64(buf, o.Seed)
		binary.BigEndian.PutUint64(buf[8:], uint64(i))
		h, _ := mh.Sum(buf, mh.SHA2_256, -1)
		p := provs[i%o.Providers]
		p.keys = append(p.keys, h)
	}
	return provs
}

// storeOwn stores each provider's own records, as Provide without broadcast
// would, in batches.
func (s *sim) storeOwn(ctx context.Context, provs []*node) error {
	exp := time.Now().Add(kad.DefaultProviderTTL)
	for _, p := range provs {
		batch := make([]store.ProviderRecord, 0, 1000)
		for i, k := range p.keys {
			batch = append(batch, store.ProviderRecord{Key: k, Provider: p.id, Addrs: p.addrs, Expires: exp})
			if len(batch) == cap(batch) || i == len(p.keys)-1 {
				if err := p.st.AddProviders(ctx, batch...); err != nil {
					return fmt.Errorf("storing own records: %w", err)
				}
				batch = batch[:0]
			}
		}
	}
	return nil
}

// regionCycle runs one cycle of the real region reprovider on every provider
// at once.
func (s *sim) regionCycle(ctx context.Context, provs []*node, res *Result) error {
	reps := make([]*jobs.Reprovider, len(provs))
	for i, p := range provs {
		reps[i] = jobs.NewReprovider(p.st, p.kad, jobs.WalkOptions{K: s.opts.K, Logger: s.quiet})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(provs))
	for i := range reps {
		wg.Go(func() { errs[i] = reps[i].RunCycle(ctx) })
	}
	stop := s.reportProgress("reproviding", func() int64 {
		var d int64
		for _, r := range reps {
			d += r.Progress().Done
		}
		return d
	})
	wg.Wait()
	stop()
	var bits []int
	for _, r := range reps {
		p := r.Progress()
		res.ReprovideLookups += p.Lookups
		res.RecordsSent += p.Sent
		res.SendErrors += p.Errors
		bits = append(bits, p.RegionBits)
	}
	slices.Sort(bits)
	res.RegionBits, res.RegionBitsMin, res.RegionBitsMax = bits[len(bits)/2], bits[0], bits[len(bits)-1]
	return errors.Join(errs...)
}

// reportProgress logs done() records of the keys every 5 s until the
// returned stop is called (which waits for the reporter to end).
func (s *sim) reportProgress(msg string, done func() int64) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				s.log.Info(msg, "records", done(), "of", s.opts.Keys)
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
	}
}

// legacyCycle reprovides every key with its own lookup: GetClosestPeers,
// then ADD_PROVIDER to each peer it returned.
func (s *sim) legacyCycle(ctx context.Context, provs []*node, res *Result) error {
	var lookups, sent, errs, keysDone atomic.Int64
	stop := s.reportProgress("reproviding (legacy)", keysDone.Load)
	var wg sync.WaitGroup
	for _, p := range provs {
		wg.Go(func() {
			_ = workers.Run(ctx, len(p.keys), s.opts.LegacyConcurrency, func(ctx context.Context, i int) error {
				key := p.keys[i]
				peers, err := p.kad.GetClosestPeers(ctx, key)
				lookups.Add(1)
				if err != nil {
					errs.Add(1)
				}
				for _, q := range peers {
					if err := p.kad.SendAddProviders(ctx, q, key); err != nil {
						errs.Add(1)
						continue
					}
					sent.Add(1)
				}
				keysDone.Add(1)
				s.churn.advance(1)
				return nil
			})
		})
	}
	wg.Wait()
	stop()
	res.ReprovideLookups, res.RecordsSent, res.SendErrors = lookups.Load(), sent.Load(), errs.Load()
	return ctx.Err()
}

// messageCounts sums the nodes' counts of received messages by type and
// outcome, and of rejected records by reason.
func (s *sim) messageCounts() (received, rejected map[string]int64) {
	received, rejected = map[string]int64{}, map[string]int64{}
	mfs, err := s.metrics.Gather()
	if err != nil {
		s.log.Warn("gathering the nodes' metrics", "err", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := int64(m.GetCounter().GetValue())
			switch mf.GetName() {
			case "kadstore_kad_messages_received_total":
				received[labels["type"]+" "+labels["outcome"]] += v
			case "kadstore_kad_records_rejected_total":
				rejected[labels["reason"]] += v
			}
		}
	}
	return received, rejected
}

// churner makes nodes leave and join during the cycle, in step with it:
// event j of the Churn·Nodes events fires as soon as the cycle has taken up
// j/(events+1) of the keys (the providers' stores call advance after each
// Scan page; the legacy cycle after each key). An event stops one random live
// node that is not a provider, and starts a new one that bootstraps from a
// random live node in the background. Providers never leave: their cycle
// would stop with them.
type churner struct {
	s      *sim
	events int
	rng    *mrand.Rand

	mu     sync.Mutex
	done   int64 // keys taken up by the cycle
	fired  int
	left   int
	joined atomic.Int64 // joiners whose bootstrap succeeded
	ctx    context.Context
	wg     sync.WaitGroup
	sem    chan struct{}
}

func (s *sim) newChurner(ctx context.Context) *churner {
	return &churner{
		s:      s,
		events: int(s.opts.Churn * float64(s.opts.Nodes)),
		rng:    mrand.New(mrand.NewPCG(s.opts.Seed, 0xc4a2)),
		ctx:    ctx,
		sem:    make(chan struct{}, 4),
	}
}

// advance records n more keys taken up and fires the events now due.
func (c *churner) advance(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += int64(n)
	for c.fired < c.events && c.done*int64(c.events+1) >= int64(c.fired+1)*int64(c.s.opts.Keys) && c.ctx.Err() == nil {
		c.fired++
		c.event()
	}
}

func (c *churner) event() {
	s := c.s
	s.mu.Lock()
	var cands []*node
	for _, n := range s.nodes {
		if n.alive && !n.prov {
			cands = append(cands, n)
		}
	}
	victim := cands[c.rng.IntN(len(cands))]
	victim.alive = false
	boot := victim
	for boot == victim {
		boot = cands[c.rng.IntN(len(cands))]
	}
	s.mu.Unlock()
	s.f.setAlive(victim.id, false)
	victim.stop()
	c.left++

	s.mu.Lock()
	n, err := s.newNode([]peer.AddrInfo{{ID: boot.id, Addrs: boot.addrs}})
	if err == nil {
		n.joiner = true
		s.nodes = append(s.nodes, n)
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("churn: a node could not start", "err", err)
		return
	}
	c.sem <- struct{}{}
	c.wg.Go(func() {
		defer func() { <-c.sem }()
		if err := n.kad.RefreshRoutingTable(c.ctx); err == nil {
			c.joined.Add(1)
		} else if c.ctx.Err() == nil {
			s.log.Warn("churn: a joining node failed to bootstrap", "err", err)
		}
	})
}

// wait waits for the joiners' bootstraps and returns how many nodes left and
// joined.
func (c *churner) wait() (left, joined int) {
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.left, int(c.joined.Load())
}

// waitDelivered waits until the nodes stored as many records as were sent
// (ADD_PROVIDER is never acknowledged), or until no record arrived for two
// seconds (records sent to a node that then left never arrive).
func (s *sim) waitDelivered(ctx context.Context, sent int64) int64 {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last, since := s.received.Load(), time.Now()
	for {
		got := s.received.Load()
		if got >= sent || ctx.Err() != nil {
			return got
		}
		if got != last {
			last, since = got, time.Now()
		} else if time.Since(since) > 2*time.Second {
			s.log.Warn("some records sent never arrived", "sent", sent, "stored", got)
			return got
		}
		<-tick.C
	}
}

func (s *sim) live() []*node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*node
	for _, n := range s.nodes {
		if n.alive {
			out = append(out, n)
		}
	}
	return out
}

// coverageCount counts (key, k closest live node) pairs, and those whose node
// holds the record, in all and for the nodes that joined during the cycle.
type coverageCount struct {
	pairs, held, joinerPairs, joinerHeld int64
}

func (c coverageCount) frac() float64       { return ratio(c.held, c.pairs) }
func (c coverageCount) joinerFrac() float64 { return ratio(c.joinerHeld, c.joinerPairs) }

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// coverage checks, for every key, which of its k closest live nodes (its
// provider left out) hold its record.
func (s *sim) coverage(ctx context.Context, provs []*node, live []*node) coverageCount {
	sorted := slices.Clone(live)
	slices.SortFunc(sorted, func(a, b *node) int { return cmp.Compare(string(a.kk[:]), string(b.kk[:])) })
	type job struct {
		p   *node
		key []byte
	}
	var work []job
	for _, p := range provs {
		for _, k := range p.keys {
			work = append(work, job{p, k})
		}
	}
	var total, held, jTotal, jHeld atomic.Int64
	_ = workers.Run(ctx, len(work), runtime.GOMAXPROCS(0)*2, func(ctx context.Context, i int) error {
		j := work[i]
		for _, q := range closestTo(sorted, record.KadKeyOf(j.key), s.opts.K, j.p) {
			total.Add(1)
			if q.joiner {
				jTotal.Add(1)
			}
			recs, err := q.st.Providers(ctx, j.key, 0)
			if err != nil {
				continue
			}
			if slices.ContainsFunc(recs, func(r store.ProviderRecord) bool { return r.Provider == j.p.id }) {
				held.Add(1)
				if q.joiner {
					jHeld.Add(1)
				}
			}
		}
		return nil
	})
	return coverageCount{pairs: total.Load(), held: held.Load(), joinerPairs: jTotal.Load(), joinerHeld: jHeld.Load()}
}

// closestTo returns the k nodes of sorted (in Kademlia key order) closest to
// t by XOR distance, leaving out skip. Every node sharing a longer prefix
// with t is closer than every node sharing a shorter one, so it narrows to
// the longest prefix of t that still holds k+1 nodes and sorts only those.
func closestTo(sorted []*node, t record.KadKey, k int, skip *node) []*node {
	lo, hi := 0, len(sorted)
	for b := 0; b < record.KadKeySize*8; b++ {
		mid := lo + sort.Search(hi-lo, func(i int) bool { return sorted[lo+i].kk.Bit(b) == 1 })
		nlo, nhi := lo, mid
		if t.Bit(b) == 1 {
			nlo, nhi = mid, hi
		}
		if nhi-nlo < k+1 {
			break
		}
		lo, hi = nlo, nhi
	}
	cands := make([]*node, 0, hi-lo)
	for _, n := range sorted[lo:hi] {
		if n != skip {
			cands = append(cands, n)
		}
	}
	slices.SortFunc(cands, func(a, b *node) int {
		for i := range t {
			if c := cmp.Compare(a.kk[i]^t[i], b.kk[i]^t[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	return cands[:min(k, len(cands))]
}

// finds runs FindProviders from random live nodes (not the provider) for
// random keys, and counts those that found the provider.
func (s *sim) finds(ctx context.Context, provs []*node, live []*node) (int, int) {
	type job struct {
		p, from *node
		key     []byte
	}
	work := make([]job, s.opts.Finds)
	for i := range work {
		p := provs[s.rng.IntN(len(provs))]
		from := live[s.rng.IntN(len(live))]
		for from == p {
			from = live[s.rng.IntN(len(live))]
		}
		work[i] = job{p, from, p.keys[s.rng.IntN(len(p.keys))]}
	}
	var found atomic.Int64
	_ = workers.Run(ctx, len(work), 32, func(ctx context.Context, i int) error {
		j := work[i]
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		for ai, err := range j.from.kad.FindProviders(ctx, cid.NewCidV1(cid.Raw, j.key), 1) {
			if err != nil {
				break
			}
			if ai.ID == j.p.id {
				found.Add(1)
				break
			}
		}
		return nil
	})
	return len(work), int(found.Load())
}

func (s *sim) teardown() {
	s.mu.Lock()
	nodes := slices.Clone(s.nodes)
	s.mu.Unlock()
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, n := range nodes {
		if !n.alive {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n.stop()
		})
	}
	wg.Wait()
	_ = s.f.mn.Close()
	s.log.Debug("network torn down", "seconds", round(time.Since(start).Seconds()))
}
