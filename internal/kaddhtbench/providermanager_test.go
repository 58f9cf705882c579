package kaddhtbench_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	"github.com/multiformats/go-base32"

	"github.com/kadstore/kadstore/internal/bench"
	"github.com/kadstore/kadstore/record"
)

var (
	flagN           = flag.Int64("kaddht.n", 2000, "number of provider records")
	flagDir         = flag.String("kaddht.dir", "", "working directory (default: the test's temporary directory)")
	flagJSON        = flag.String("kaddht.json", "", "also write the figures as JSON to this file")
	flagLookups     = flag.Int64("kaddht.lookups", 0, "lookups per lookup phase (default min(n, 1000000))")
	flagConcurrency = flag.Int("kaddht.concurrency", 8, "goroutines of the concurrent phases")
	flagSkipIngest  = flag.Bool("kaddht.skip-ingest", false, "skip the 8-goroutine ingest into a fresh store")
)

// result holds the figures, named as in `kadstore bench --json` where the
// operation is the same.
type result struct {
	N    int64 `json:"n"`
	Keys int64 `json:"keys"`
	// BulkIngestRecordsPerSec: AddProvider one record at a time on one
	// goroutine. ProviderManager has no batch call; it buffers 256 writes
	// and commits them as one datastore batch, which is its bulk path.
	BulkIngestRecordsPerSec float64 `json:"bulk_ingest_records_per_sec"`
	IngestRecordsPerSec     float64 `json:"ingest_records_per_sec"`
	LookupHitPerSec         float64 `json:"lookup_hit_per_sec"`
	LookupHitP50Us          float64 `json:"lookup_hit_p50_us"`
	LookupHitP99Us          float64 `json:"lookup_hit_p99_us"`
	LookupHitP999Us         float64 `json:"lookup_hit_p999_us"`
	LookupHitSerialP99Us    float64 `json:"lookup_hit_serial_p99_us"`
	// LookupHitWithoutAddrs counts lookups (of LookupHitLookups) whose
	// answer has at least one provider without addresses: the peerstore
	// keeps at most 1 M unconnected addresses, so before any restart the
	// records beyond that have lost theirs.
	LookupHitLookups      int64   `json:"lookup_hit_lookups"`
	LookupHitWithoutAddrs int64   `json:"lookup_hit_without_addrs"`
	LookupMissPerSec      float64 `json:"lookup_miss_per_sec"`
	LookupMissP50Us       float64 `json:"lookup_miss_p50_us"`
	LookupMissP99Us       float64 `json:"lookup_miss_p99_us"`
	// ScanRecordsPerSec: ProviderManager has no scan; this is a datastore
	// query over its /providers/ prefix, the walk its own GC does. It yields
	// (key, peer, time) without addresses.
	ScanRecordsPerSec float64 `json:"scan_records_per_sec"`
	// ReopenFirstAnswerMs: open the datastore and a ProviderManager with an
	// empty peerstore (a restarted node) up to the first answer.
	ReopenFirstAnswerMs float64 `json:"reopen_first_answer_ms"`
	// RestartLookups lookups after the restart, of which
	// RestartLookupsWithoutAddrs had a provider without addresses.
	RestartLookups             int64 `json:"restart_lookups"`
	RestartLookupsWithoutAddrs int64 `json:"restart_lookups_without_addrs"`
	// ExpireRecordsPerSec: one sweep of ProviderManager's GC (it scans every
	// record), from its query to its last commit, over records of which
	// 10 % are expired.
	ExpireRecordsPerSec float64 `json:"expire_records_per_sec"`
	ExpiredRecords      int64   `json:"expired_records"`
	// ExpiredByLookups of ExpiredRecords were deleted by the concurrent
	// lookups (GetProviders deletes the expired records it reads, and the
	// sweep may delete them again), the rest by the sweep.
	ExpiredByLookups   int64   `json:"expired_by_lookups"`
	ExpireSweepSeconds float64 `json:"expire_sweep_seconds"`
	ExpireLookups      int64   `json:"expire_lookups"`
	ExpireLookupP99Us  float64 `json:"expire_lookup_p99_us"`
	PeakRSSBytes       int64   `json:"peak_rss_bytes"`
	DiskBytes          int64   `json:"disk_bytes"`
	// Phases: each phase's wall time, operations and peak RSS.
	Phases []bench.Phase `json:"phases"`
}

type harness struct {
	t       *testing.T
	w       bench.Workload
	dir     string
	conc    int
	lookups int64
	self    peer.ID
	res     result
	peak    int64 // largest VmHWM read before each reset
}

// TestProviderManagerWorkload runs the `kadstore bench` workload against
// go-libp2p-kad-dht's ProviderManager and logs its figures. At the default
// size it is a quick check that the harness works and that the figures say
// what they claim (every record found, every address lost on restart).
func TestProviderManagerWorkload(t *testing.T) {
	n := *flagN
	if n <= 0 {
		t.Fatalf("-kaddht.n must be positive")
	}
	dir := *flagDir
	if dir == "" {
		dir = t.TempDir()
	}
	h := &harness{
		t:       t,
		w:       bench.NewWorkload(1, n, time.Now()),
		dir:     dir,
		conc:    *flagConcurrency,
		lookups: *flagLookups,
		self:    bench.NewWorkload(1<<40, 1, time.Now()).Record(0).Provider,
	}
	if h.lookups <= 0 {
		h.lookups = min(n, 1_000_000)
	}
	h.res.N, h.res.Keys = n, h.w.Keys()
	ctx := t.Context()

	if !*flagSkipIngest {
		h.ingest(ctx)
	}
	pm, dstore := h.bulk(ctx)
	h.lookupPhases(ctx, pm)
	h.scan(ctx, dstore)
	pm, dstore = h.restart(ctx, pm, dstore)
	h.expire(ctx, pm, dstore)

	h.res.PeakRSSBytes = max(h.peak, bench.PeakRSS())

	out, err := json.MarshalIndent(h.res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("go-libp2p-kad-dht ProviderManager on go-ds-pebble, %d records:\n%s", n, out)
	if *flagJSON != "" {
		if err := os.WriteFile(*flagJSON, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// What the figures claim: the restarted node answers, but without a
	// single address, and the GC left exactly the long-lived records.
	if h.res.RestartLookups == 0 || h.res.RestartLookupsWithoutAddrs != h.res.RestartLookups {
		t.Errorf("after a restart %d of %d lookups lacked addresses, want all",
			h.res.RestartLookupsWithoutAddrs, h.res.RestartLookups)
	}
	if n <= 500_000 && h.res.LookupHitWithoutAddrs != 0 {
		t.Errorf("%d lookups lacked addresses before any restart, with far fewer addresses than the peerstore cap",
			h.res.LookupHitWithoutAddrs)
	}
}

// open opens the datastore in dir and a ProviderManager on it with a fresh
// in-memory peerstore, as a node (re)starting does.
func (h *harness) open(dir string, wrap func(ds.Batching) ds.Batching, opts ...records.Option) (*records.ProviderManager, *pebbleds.Datastore) {
	h.t.Helper()
	dstore, err := pebbleds.NewDatastore(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		h.t.Fatal(err)
	}
	var d ds.Batching = dstore
	if wrap != nil {
		d = wrap(d)
	}
	pm, err := records.NewProviderManager(h.self, ps, d, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	return pm, dstore
}

func closeAll(t *testing.T, pm *records.ProviderManager, dstore *pebbleds.Datastore) {
	t.Helper()
	if err := errors.Join(pm.Close(), dstore.Close()); err != nil {
		t.Fatal(err)
	}
}

// phase times fn as a named phase, as internal/bench does for kadstore:
// garbage collected first, peak RSS reset, wall time and peak recorded.
func (h *harness) phase(name string, fn func() int64) time.Duration {
	h.peak = max(h.peak, bench.PeakRSS())
	runtime.GC()
	debug.FreeOSMemory()
	bench.ResetPeakRSS()
	start := time.Now()
	ops := fn()
	d := time.Since(start)
	h.res.Phases = append(h.res.Phases, bench.Phase{
		Name: name, Seconds: d.Seconds(), Ops: ops, PeakRSSBytes: bench.PeakRSS(),
	})
	h.t.Logf("%-18s %10d ops  %8.2fs  %12.0f /s  peak RSS %d MiB", name, ops, d.Seconds(), rate(ops, d), bench.PeakRSS()>>20)
	return d
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func addrInfo(r record.ProviderRecord) peer.AddrInfo {
	return peer.AddrInfo{ID: r.Provider, Addrs: r.Addrs}
}

// ingest is the network path: one AddProvider per record from conc
// goroutines, into a fresh store that is removed afterwards.
func (h *harness) ingest(ctx context.Context) {
	dir := filepath.Join(h.dir, "kaddht-ingest")
	pm, dstore := h.open(dir, nil)
	var next atomic.Int64
	const chunk = 1000
	d := h.phase("ingest", func() int64 {
		parallel(h.t, h.conc, func(int) error {
			batch := make([]record.ProviderRecord, chunk)
			for {
				start := next.Add(chunk) - chunk
				if start >= h.w.N {
					return nil
				}
				for _, r := range h.w.Fill(batch[:min(chunk, h.w.N-start)], start) {
					if err := pm.AddProvider(ctx, r.Key, addrInfo(r)); err != nil {
						return err
					}
				}
			}
		})
		return h.w.N
	})
	closeAll(h.t, pm, dstore)
	if err := os.RemoveAll(dir); err != nil {
		h.t.Fatal(err)
	}
	h.res.IngestRecordsPerSec = rate(h.w.N, d)
}

// bulk adds every record on one goroutine, generation overlapped on another
// as for kadstore's bulk ingest.
func (h *harness) bulk(ctx context.Context) (*records.ProviderManager, *pebbleds.Datastore) {
	pm, dstore := h.open(filepath.Join(h.dir, "kaddht-store"), nil)
	ch := make(chan []record.ProviderRecord, 4)
	go func() {
		defer close(ch)
		for i := int64(0); i < h.w.N; i += 1000 {
			ch <- h.w.Fill(make([]record.ProviderRecord, min(1000, h.w.N-i)), i)
		}
	}()
	d := h.phase("bulk-ingest", func() int64 {
		for b := range ch {
			for _, r := range b {
				if err := pm.AddProvider(ctx, r.Key, addrInfo(r)); err != nil {
					h.t.Fatal(err)
				}
			}
		}
		return h.w.N
	})
	h.res.BulkIngestRecordsPerSec = rate(h.w.N, d)
	return pm, dstore
}

// lookupLoop runs ops GetProviders calls of random existing (or missing) keys
// on g goroutines. It checks each hit returns every provider of the key, and
// counts answers holding a provider without addresses.
func (h *harness) lookupLoop(ctx context.Context, pm *records.ProviderManager, g int, ops int64, missing bool) (hist *bench.Histogram, noAddrs int64) {
	hists := make([]bench.Histogram, g)
	var without atomic.Int64
	parallel(h.t, g, func(k int) error {
		rng := rand.New(rand.NewPCG(1, uint64(k)))
		mine := ops / int64(g)
		if int64(k) < ops%int64(g) {
			mine++
		}
		for range mine {
			j := rng.Int64N(h.w.Keys())
			key := h.w.Key(j)
			if missing {
				key = h.w.MissingKey(j)
			}
			start := time.Now()
			infos, err := pm.GetProviders(ctx, key)
			hists[k].Record(time.Since(start))
			if err != nil {
				return err
			}
			want := int64(0)
			if !missing {
				_, want = h.w.RecordsOf(j)
			}
			if int64(len(infos)) != want {
				return fmt.Errorf("key %d: %d providers, want %d", j, len(infos), want)
			}
			for _, ai := range infos {
				if len(ai.Addrs) == 0 {
					without.Add(1)
					break
				}
			}
		}
		return nil
	})
	hist = new(bench.Histogram)
	for k := range hists {
		hist.Merge(&hists[k])
	}
	return hist, without.Load()
}

func (h *harness) lookupPhases(ctx context.Context, pm *records.ProviderManager) {
	L := h.lookups
	var hit, serial, miss *bench.Histogram
	d := h.phase("lookup-hit", func() int64 {
		hit, h.res.LookupHitWithoutAddrs = h.lookupLoop(ctx, pm, h.conc, L, false)
		return L
	})
	h.res.LookupHitLookups = L
	h.res.LookupHitPerSec = rate(L, d)
	h.res.LookupHitP50Us = us(hit.Quantile(0.5))
	h.res.LookupHitP99Us = us(hit.Quantile(0.99))
	h.res.LookupHitP999Us = us(hit.Quantile(0.999))

	Ls := max(1, L/8)
	h.phase("lookup-hit-serial", func() int64 {
		serial, _ = h.lookupLoop(ctx, pm, 1, Ls, false)
		return Ls
	})
	h.res.LookupHitSerialP99Us = us(serial.Quantile(0.99))

	d = h.phase("lookup-miss", func() int64 {
		miss, _ = h.lookupLoop(ctx, pm, h.conc, L, true)
		return L
	})
	h.res.LookupMissPerSec = rate(L, d)
	h.res.LookupMissP50Us = us(miss.Quantile(0.5))
	h.res.LookupMissP99Us = us(miss.Quantile(0.99))
}

// countProviders walks the provider prefix of the datastore.
func countProviders(t *testing.T, ctx context.Context, d ds.Datastore) int64 {
	t.Helper()
	res, err := d.Query(ctx, dsq.Query{Prefix: records.ProvidersKeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	var n int64
	for e := range res.Next() {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		n++
	}
	return n
}

func (h *harness) scan(ctx context.Context, dstore *pebbleds.Datastore) {
	var n int64
	d := h.phase("scan", func() int64 {
		n = countProviders(h.t, ctx, dstore)
		return n
	})
	// Records still in ProviderManager's write buffer (under 256) are not
	// in the datastore yet.
	if n < h.w.N-256 || n > h.w.N {
		h.t.Fatalf("datastore holds %d provider records, want %d", n, h.w.N)
	}
	h.res.ScanRecordsPerSec = rate(n, d)
}

// restart closes the node's store, measures its directory, and reopens it
// with an empty peerstore, timing the first answer; then it counts how many
// lookups come back without addresses.
func (h *harness) restart(ctx context.Context, pm *records.ProviderManager, dstore *pebbleds.Datastore) (*records.ProviderManager, *pebbleds.Datastore) {
	closeAll(h.t, pm, dstore)
	dir := filepath.Join(h.dir, "kaddht-store")
	disk, err := dirBytes(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.res.DiskBytes = disk
	d := h.phase("reopen", func() int64 {
		pm, dstore = h.open(dir, nil)
		infos, err := pm.GetProviders(ctx, h.w.Key(0))
		if err != nil || len(infos) != bench.WideProviders {
			h.t.Fatalf("first lookup after restart: %d providers, %v", len(infos), err)
		}
		return 1
	})
	h.res.ReopenFirstAnswerMs = float64(d.Microseconds()) / 1e3
	L := min(h.lookups, 100_000)
	h.phase("lookup-after-restart", func() int64 {
		_, h.res.RestartLookupsWithoutAddrs = h.lookupLoop(ctx, pm, h.conc, L, false)
		return L
	})
	h.res.RestartLookups = L
	return pm, dstore
}

// gcWatch wraps the datastore to see ProviderManager's GC sweep: it marks the
// sweep's start at its query of the whole provider prefix and its end when
// that query is closed (after the sweep's last commit), and counts the
// deletes the sweep commits and those lookups make on their own.
type gcWatch struct {
	ds.Batching
	start   atomic.Int64 // UnixNano of the sweep's query
	stop    atomic.Int64 // UnixNano of its Close
	began   chan struct{}
	end     chan struct{}
	once    sync.Once
	deleted atomic.Int64 // by the sweep's batches
	readDel atomic.Int64 // by GetProviders, which deletes expired records it reads
}

func (w *gcWatch) Delete(ctx context.Context, k ds.Key) error {
	err := w.Batching.Delete(ctx, k)
	if err == nil {
		w.readDel.Add(1)
	}
	return err
}

func (w *gcWatch) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	res, err := w.Batching.Query(ctx, q)
	if err != nil || q.Prefix != records.ProvidersKeyPrefix || !w.start.CompareAndSwap(0, time.Now().UnixNano()) {
		return res, err
	}
	close(w.began)
	return &sweepResults{Results: res, w: w}, nil
}

func (w *gcWatch) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := w.Batching.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &countingBatch{Batch: b, w: w}, nil
}

type sweepResults struct {
	dsq.Results
	w *gcWatch
}

func (r *sweepResults) Close() error {
	err := r.Results.Close()
	r.w.once.Do(func() {
		r.w.stop.Store(time.Now().UnixNano())
		close(r.w.end)
	})
	return err
}

type countingBatch struct {
	ds.Batch
	w       *gcWatch
	deletes int64
}

func (b *countingBatch) Delete(ctx context.Context, k ds.Key) error {
	b.deletes++
	return b.Batch.Delete(ctx, k)
}

func (b *countingBatch) Commit(ctx context.Context) error {
	err := b.Batch.Commit(ctx)
	if err == nil {
		b.w.deleted.Add(b.deletes)
	}
	return err
}

// expire makes the short-lived 10 % of the records expired and times one
// sweep of ProviderManager's GC over the store, with one goroutine looking
// keys up meanwhile.
//
// ProviderManager stamps each record with the time it was added and expires
// it provideValidity later, and neither clock can be injected. So the short
// records are aged in place: their datastore values are rewritten (untimed)
// with a time 12 h ago, and the GC runs with a 6 h validity, under which
// they, and only they, are expired.
func (h *harness) expire(ctx context.Context, pm *records.ProviderManager, dstore *pebbleds.Datastore) {
	closeAll(h.t, pm, dstore)
	dir := filepath.Join(h.dir, "kaddht-store")
	dstore, err := pebbleds.NewDatastore(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	batch, err := dstore.Batch(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	old := binary.AppendVarint(nil, time.Now().Add(-12*time.Hour).UnixNano())
	var want int64
	for i := int64(0); i < h.w.N; i++ {
		if !h.w.Short(i) {
			continue
		}
		r := h.w.Record(i)
		key := records.ProvidersKeyPrefix + base32.RawStdEncoding.EncodeToString(r.Key) + "/" +
			base32.RawStdEncoding.EncodeToString([]byte(r.Provider))
		if err := batch.Put(ctx, ds.NewKey(key), old); err != nil {
			h.t.Fatal(err)
		}
		if want++; want%10_000 == 0 {
			if err := batch.Commit(ctx); err != nil {
				h.t.Fatal(err)
			}
			if batch, err = dstore.Batch(ctx); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	if err := errors.Join(batch.Commit(ctx), dstore.Close()); err != nil {
		h.t.Fatal(err)
	}

	watch := &gcWatch{began: make(chan struct{}), end: make(chan struct{})}
	var hist bench.Histogram
	h.phase("expire", func() int64 {
		// The GC's first sweep starts one CleanupInterval after the
		// manager opens. One goroutine looks keys up from the moment it
		// begins; the answers are not checked, as the aged records may or
		// may not be gone.
		pm, dstore = h.open(dir, func(d ds.Batching) ds.Batching { watch.Batching = d; return watch },
			records.ProvideValidity(6*time.Hour), records.CleanupInterval(20*time.Millisecond))
		lookCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-watch.began:
			case <-lookCtx.Done():
				return
			}
			rng := rand.New(rand.NewPCG(1, 1<<32))
			for lookCtx.Err() == nil {
				key := h.w.Key(rng.Int64N(h.w.Keys()))
				start := time.Now()
				if _, err := pm.GetProviders(lookCtx, key); err != nil {
					return
				}
				hist.Record(time.Since(start))
			}
		}()
		<-watch.end
		cancel()
		<-done
		return watch.deleted.Load() + watch.readDel.Load()
	})
	closeAll(h.t, pm, dstore)

	// The phase's time includes the wait for the GC's first tick; the
	// sweep's own time runs from its query to that query's Close.
	sweep := time.Duration(watch.stop.Load() - watch.start.Load())
	h.res.ExpireSweepSeconds = sweep.Seconds()
	// Lookups and the sweep may both delete one record, so the records
	// removed are counted by what is left, below.
	h.res.ExpiredRecords = want
	h.res.ExpiredByLookups = watch.readDel.Load()
	h.res.ExpireRecordsPerSec = rate(want, sweep)
	h.res.ExpireLookups = int64(hist.Count())
	h.res.ExpireLookupP99Us = us(hist.Quantile(0.99))

	dstore, err = pebbleds.NewDatastore(dir)
	if err != nil {
		h.t.Fatal(err)
	}
	left := countProviders(h.t, ctx, dstore)
	if err := dstore.Close(); err != nil {
		h.t.Fatal(err)
	}
	if left != h.w.N-want {
		h.t.Errorf("after the GC sweep %d records are left, want %d (of %d, %d aged)", left, h.w.N-want, h.w.N, want)
	}
}

// parallel runs fn on n goroutines and fails the test on the first error.
func parallel(t *testing.T, n int, fn func(g int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { errs[g] = fn(g) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func dirBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return err
	})
	return total, err
}
