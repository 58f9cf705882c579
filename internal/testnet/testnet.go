// Package testnet runs a whole kadstore DHT on loopback in one process: N
// nodes, each with its own Pebble store, that provide keys, find them from
// other nodes, and survive a restart. It backs `kadstore testnet`, the way to
// see the system work without a network.
package testnet

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/internal/workers"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// Options configure a test network.
type Options struct {
	// Nodes in the network; default 20.
	Nodes int
	// Keys provided; default 100.
	Keys int
	// Dir holds the nodes' stores (one directory each).
	Dir string
	// Concurrency of provides and lookups; default 16.
	Concurrency int
	// Log receives progress lines; nil for none.
	Log io.Writer
	// Logger for the nodes; default discards.
	Logger *slog.Logger
}

// Summary is what a run found.
type Summary struct {
	Nodes          int           `json:"nodes"`
	Keys           int           `json:"keys"`
	Provided       int           `json:"provided"`
	Found          int           `json:"found"`
	FoundWithAddrs int           `json:"found_with_addrs"`
	ProvideTime    time.Duration `json:"provide_time"`
	FindTime       time.Duration `json:"find_time"`
	// Restart: the node restarted, its records before and after, and how many
	// of the keys it provided were still found (from other nodes) after.
	Restarted         peer.ID `json:"restarted"`
	RecordsBefore     int64   `json:"records_before"`
	RecordsAfter      int64   `json:"records_after"`
	RestartKeys       int     `json:"restart_keys"`
	FoundAfterRestart int     `json:"found_after_restart"`
}

type node struct {
	key  crypto.PrivKey
	dir  string
	h    host.Host
	st   store.Store
	kad  *kad.Node
	keys [][]byte // keys this node provided
}

func newHost(key crypto.PrivKey) (host.Host, error) {
	return p2ptest.New(libp2p.Identity(key))
}

func (n *node) start(bootstrap []peer.AddrInfo, logger *slog.Logger) error {
	var err error
	if n.st, err = pebblestore.Open(n.dir, pebblestore.Options{Options: store.Options{Logger: logger}}); err != nil {
		return err
	}
	if n.h, err = newHost(n.key); err != nil {
		n.st.Close()
		return err
	}
	n.kad, err = kad.New(n.h, n.st, kad.Mode(kad.ModeServer), kad.BootstrapPeers(bootstrap...),
		kad.Registerer(prometheus.NewRegistry()), kad.Logger(logger))
	if err != nil {
		n.h.Close()
		n.st.Close()
	}
	return err
}

func (n *node) stop() {
	if n.kad != nil {
		n.kad.Close()
	}
	if n.h != nil {
		n.h.Close()
	}
	if n.st != nil {
		n.st.Close()
	}
	n.kad, n.h, n.st = nil, nil, nil
}

// Run builds the network, exercises it and tears it down.
func Run(ctx context.Context, opts Options) (Summary, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 20
	}
	if opts.Keys <= 0 {
		opts.Keys = 100
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", args...)
		}
	}
	sum := Summary{Nodes: opts.Nodes, Keys: opts.Keys}
	nodes := make([]*node, opts.Nodes)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.stop()
			}
		}
	}()

	// Start the nodes; every node bootstraps from the first.
	logf("starting %d nodes on loopback, stores in %s", opts.Nodes, opts.Dir)
	var first []peer.AddrInfo
	for i := range nodes {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return sum, err
		}
		n := &node{key: key, dir: filepath.Join(opts.Dir, fmt.Sprintf("node-%02d", i))}
		if err := n.start(first, opts.Logger); err != nil {
			return sum, fmt.Errorf("node %d: %w", i, err)
		}
		nodes[i] = n
		if i == 0 {
			first = []peer.AddrInfo{{ID: n.h.ID(), Addrs: n.h.Addrs()}}
		}
	}
	if err := each(ctx, nodes[1:], opts.Concurrency, func(ctx context.Context, n *node) error {
		return n.kad.RefreshRoutingTable(ctx)
	}); err != nil {
		return sum, fmt.Errorf("bootstrap: %w", err)
	}
	// A second round fills the tables now that every node is known to some.
	if err := each(ctx, nodes, opts.Concurrency, func(ctx context.Context, n *node) error {
		return n.kad.RefreshRoutingTable(ctx)
	}); err != nil {
		return sum, fmt.Errorf("refresh: %w", err)
	}
	rtMin := opts.Nodes
	for _, n := range nodes {
		rtMin = min(rtMin, n.kad.RoutingTable().Size())
	}
	logf("routing tables filled (smallest holds %d peers)", rtMin)

	// Provide the keys from random nodes.
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	type job struct {
		key      []byte
		provider int
	}
	work := make([]job, opts.Keys)
	for i := range work {
		h, _ := mh.Sum(fmt.Appendf(nil, "testnet key %d %d", i, rng.Uint64()), mh.SHA2_256, -1)
		work[i] = job{key: h, provider: rng.IntN(opts.Nodes)}
		nodes[work[i].provider].keys = append(nodes[work[i].provider].keys, h)
	}
	start := time.Now()
	var provided atomic.Int64
	err := workers.Run(ctx, len(work), opts.Concurrency, func(ctx context.Context, i int) error {
		if err := nodes[work[i].provider].kad.ProvideKey(ctx, work[i].key, true); err == nil {
			provided.Add(1)
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	sum.Provided, sum.ProvideTime = int(provided.Load()), time.Since(start)
	logf("provided %d of %d keys in %v", sum.Provided, opts.Keys, sum.ProvideTime.Round(time.Millisecond))

	// Find every key from another node.
	start = time.Now()
	found, withAddrs := findAll(ctx, nodes, work, opts.Concurrency, rng, func(j job) (int, []byte) { return j.provider, j.key })
	sum.Found, sum.FoundWithAddrs, sum.FindTime = found, withAddrs, time.Since(start)
	logf("found %d of %d keys from other nodes (%d with addresses) in %v", found, opts.Keys, withAddrs, sum.FindTime.Round(time.Millisecond))

	// Restart the node that stores the most records, on the same directory
	// and identity, and look its keys up again.
	victim := nodes[0]
	var most int64 = -1
	for _, n := range nodes[1:] {
		if st, err := n.st.Stats(ctx); err == nil && st.ProviderRecords > most {
			most, victim = st.ProviderRecords, n
		}
	}
	sum.Restarted, sum.RecordsBefore = victim.h.ID(), most
	victim.stop()
	if err := victim.start(first, opts.Logger); err != nil {
		return sum, fmt.Errorf("restart: %w", err)
	}
	if err := victim.kad.RefreshRoutingTable(ctx); err != nil {
		return sum, fmt.Errorf("restart: %w", err)
	}
	if st, err := victim.st.Stats(ctx); err == nil {
		sum.RecordsAfter = st.ProviderRecords
	}
	var again []job
	for i, n := range nodes {
		if n == victim {
			for _, k := range n.keys {
				again = append(again, job{key: k, provider: i})
			}
		}
	}
	sum.RestartKeys = len(again)
	sum.FoundAfterRestart, _ = findAll(ctx, nodes, again, opts.Concurrency, rng, func(j job) (int, []byte) { return j.provider, j.key })
	logf("restarted %s: %d records before, %d after; %d of its %d keys still found",
		sum.Restarted, sum.RecordsBefore, sum.RecordsAfter, sum.FoundAfterRestart, sum.RestartKeys)
	return sum, nil
}

// findAll looks every key up from a node other than its provider and counts
// the keys whose provider was found (and found with addresses).
func findAll[J any](ctx context.Context, nodes []*node, work []J, conc int, rng *mrand.Rand, get func(J) (int, []byte)) (found, withAddrs int) {
	askers := make([]int, len(work))
	for i := range work {
		p, _ := get(work[i])
		askers[i] = (p + 1 + rng.IntN(len(nodes)-1)) % len(nodes)
	}
	var f, a atomic.Int64
	_ = workers.Run(ctx, len(work), conc, func(ctx context.Context, i int) error {
		p, key := get(work[i])
		want := nodes[p].h.ID()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for ai, err := range nodes[askers[i]].kad.FindProviders(ctx, cid.NewCidV1(cid.Raw, key), 0) {
			if err != nil {
				break
			}
			if ai.ID == want {
				f.Add(1)
				if len(ai.Addrs) > 0 {
					a.Add(1)
				}
				break
			}
		}
		return nil
	})
	return int(f.Load()), int(a.Load())
}

func each(ctx context.Context, nodes []*node, conc int, f func(context.Context, *node) error) error {
	return workers.Run(ctx, len(nodes), conc, func(ctx context.Context, i int) error { return f(ctx, nodes[i]) })
}
