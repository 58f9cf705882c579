package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// ErrMismatch is returned when a store answers the workload wrongly (a lookup,
// scan or expire that does not match the records written): the figures of a
// store that loses records mean nothing.
var ErrMismatch = errors.New("bench: store answer does not match the workload")

// Backend is a store implementation under test.
type Backend struct {
	// Name is how the backend is called on the command line.
	Name string
	// Persistent reports that a store reopened on the same directory holds
	// the records written before Close. The reopen phase and the disk figure
	// are skipped (reported as 0) for backends that are not.
	Persistent bool
	// Open opens, creating if needed, the store named by dir with the given
	// shared options (the runner injects its clock there). A backend that
	// keeps its data elsewhere (a database) derives the store's name from
	// dir: the same dir must name the same store again.
	Open func(ctx context.Context, dir string, opts store.Options) (store.Store, error)
	// Remove, if set, deletes what Open created for dir outside dir (a
	// database schema). The runner calls it, besides removing dir, when it
	// is done with a store, unless Config.Keep is set.
	Remove func(ctx context.Context, dir string) error
	// DiskFromStats makes the disk figure Stats().DiskBytes of the open
	// store, read just before the reopen phase closes it, instead of the
	// size of dir after Close: for backends whose data is not in dir.
	DiskFromStats bool
	// AfterBulk, if set, runs untimed after the bulk ingest, on the store's
	// dir, before the reopen phase: maintenance an operator would run after
	// a bulk load (e.g. ANALYZE in PostgreSQL).
	AfterBulk func(ctx context.Context, dir string) error
}

// Config selects the workload and how it is run. Zero fields take the
// defaults documented on each.
type Config struct {
	Backend Backend
	// N is the number of provider records. Required.
	N int64
	// Dir is the working directory. Run creates raw/, ingest/ and store/ in it
	// and removes each when it is done with it, unless Keep is set.
	Dir  string
	Keep bool
	// Seed selects the workload; default 1.
	Seed uint64
	// Concurrency is the number of goroutines of the concurrent phases
	// (network-path ingest, lookups); default 8.
	Concurrency int
	// BatchSize is the AddProviders batch of the bulk ingest, the raw Pebble
	// batch, and the Scan page; default 1000.
	BatchSize int
	// Lookups is the number of lookups of each lookup phase; default
	// min(N, 1 000 000). The single-goroutine idle phase runs Lookups/8.
	Lookups int64
	// ExpireBatch is the limit passed to each Expire call; default 10 000.
	ExpireBatch int
	// SkipRaw and SkipIngest leave out the raw Pebble baseline and the
	// network-path ingest (their figures are then 0).
	SkipRaw, SkipIngest bool
	// DirectIngest makes the network-path ingest call AddProviders once a
	// record and wait for it, as a node does for records it must not lose
	// (its own). By default the records go through a store.WriteBehind, as
	// the node's ADD_PROVIDER handler sends them (kad.Config
	// WriteBehindRecords), and the phase ends when the last is committed.
	DirectIngest bool
	// Progress receives progress of each phase; default none.
	Progress Progress
	// Logger receives one line per phase; default slog.Default().
	Logger *slog.Logger
	// PhaseHook, if set, is called as each phase starts (after the garbage
	// collection that precedes it) with the phase's name, and the function
	// it returns, if not nil, as the phase ends: a way to profile one phase.
	PhaseHook func(phase string) (end func())
}

func (c *Config) ensureDefaults() {
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Lookups <= 0 {
		c.Lookups = min(c.N, 1_000_000)
	}
	if c.ExpireBatch <= 0 {
		c.ExpireBatch = 10_000
	}
	if c.Progress == nil {
		c.Progress = nopProgress{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Result holds every figure of a run. The first fields are the ones the
// benchmark specification requires; the rest explain them. Rates are per
// second of wall-clock time, latencies in microseconds.
type Result struct {
	N                       int64   `json:"n"`
	BulkIngestRecordsPerSec float64 `json:"bulk_ingest_records_per_sec"`
	RawPebbleRecordsPerSec  float64 `json:"raw_pebble_records_per_sec"`
	IngestRecordsPerSec     float64 `json:"ingest_records_per_sec"`
	LookupHitPerSec         float64 `json:"lookup_hit_per_sec"`
	LookupHitP50Us          float64 `json:"lookup_hit_p50_us"`
	LookupHitP99Us          float64 `json:"lookup_hit_p99_us"`
	LookupHitP999Us         float64 `json:"lookup_hit_p999_us"`
	LookupMissP99Us         float64 `json:"lookup_miss_p99_us"`
	ScanRecordsPerSec       float64 `json:"scan_records_per_sec"`
	ExpireRecordsPerSec     float64 `json:"expire_records_per_sec"`
	ExpireLookupP99Us       float64 `json:"expire_lookup_p99_us"`
	ReopenFirstAnswerMs     float64 `json:"reopen_first_answer_ms"`
	PeakRSSBytes            int64   `json:"peak_rss_bytes"`
	DiskBytes               int64   `json:"disk_bytes"`

	// Backend is the backend's name.
	Backend string `json:"backend"`
	// Keys is the number of distinct keys of the N records.
	Keys int64 `json:"keys"`
	// Concurrency is the goroutine count of the concurrent phases.
	Concurrency int `json:"concurrency"`
	// GeneratorRecordsPerSec is how fast the workload generator alone makes
	// records on one goroutine: the ceiling no ingest figure can pass, since
	// the ingest phases generate their records as they go.
	GeneratorRecordsPerSec float64 `json:"generator_records_per_sec"`
	// RawBytes is the sum of the records' encoded sizes
	// (record.MarshalProvider: key, provider, addresses, expiry), the "raw
	// bytes" the disk figure is compared to.
	RawBytes int64 `json:"raw_bytes"`
	// DiskRatio is DiskBytes / RawBytes.
	DiskRatio float64 `json:"disk_ratio"`
	// RawPebbleDiskBytes is the size of the raw Pebble baseline's directory
	// after its writes.
	RawPebbleDiskBytes int64 `json:"raw_pebble_disk_bytes"`
	// BulkVsRaw is BulkIngestRecordsPerSec / RawPebbleRecordsPerSec.
	BulkVsRaw float64 `json:"bulk_vs_raw"`
	// LookupHitSerialP99Us is the p99 of lookups of existing keys from one
	// goroutine with the store idle: the baseline of ExpireLookupP99Us, whose
	// lookups also run on one goroutine.
	LookupHitSerialP99Us float64 `json:"lookup_hit_serial_p99_us"`
	// LookupMissPerSec and LookupMissP50Us complete the missing-key phase.
	LookupMissPerSec float64 `json:"lookup_miss_per_sec"`
	LookupMissP50Us  float64 `json:"lookup_miss_p50_us"`
	// ExpiredRecords is how many records Expire removed (10 % of N).
	ExpiredRecords int64 `json:"expired_records"`
	// ExpireLookups is how many lookups ran during Expire.
	ExpireLookups int64 `json:"expire_lookups"`
	// ExpireLookupRatio is ExpireLookupP99Us / LookupHitSerialP99Us.
	ExpireLookupRatio float64 `json:"expire_lookup_ratio"`
	// Phases lists each phase's wall time, operation count and peak RSS.
	Phases []Phase `json:"phases"`
}

// Phase is the record of one phase of a run.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	Ops     int64   `json:"ops"`
	// PeakRSSBytes is the peak RSS during the phase where the kernel lets the
	// peak be reset (Linux), else the process's peak so far.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// clock is the stores' clock: wall time plus an offset the expire phase
// advances, so records expire without waiting.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

type runner struct {
	cfg   Config
	w     Workload
	clock clock
	res   Result
	// peak is the largest VmHWM read before each reset, so work between
	// phases (opening and closing stores) counts towards the peak too.
	peak int64
}

// Run runs every phase on cfg.Backend and returns the figures.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.ensureDefaults()
	if cfg.N <= 0 {
		return nil, fmt.Errorf("bench: N must be positive, got %d", cfg.N)
	}
	if cfg.Dir == "" || cfg.Backend.Open == nil {
		return nil, errors.New("bench: Config needs Dir and Backend.Open")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &runner{cfg: cfg, w: NewWorkload(cfg.Seed, cfg.N, time.Now())}
	r.res.N = cfg.N
	r.res.Backend = cfg.Backend.Name
	r.res.Keys = r.w.Keys()
	r.res.Concurrency = cfg.Concurrency

	r.res.GeneratorRecordsPerSec = r.generator()
	if !cfg.SkipRaw {
		if err := r.rawPebble(ctx); err != nil {
			return nil, err
		}
	}
	if !cfg.SkipIngest {
		if err := r.ingest(ctx); err != nil {
			return nil, err
		}
	}
	s, err := r.bulk(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if s != nil {
			_ = s.Close()
		}
		if !cfg.Keep {
			_ = r.remove(context.WithoutCancel(ctx), r.dir("store"))
		}
	}()
	if cfg.Backend.AfterBulk != nil {
		if err := cfg.Backend.AfterBulk(ctx, r.dir("store")); err != nil {
			return nil, fmt.Errorf("bench: after bulk ingest: %w", err)
		}
	}
	if cfg.Backend.Persistent {
		s, err = r.reopen(ctx, s)
		if err != nil {
			return nil, err
		}
	}
	if err := r.lookups(ctx, s); err != nil {
		return nil, err
	}
	if err := r.scan(ctx, s); err != nil {
		return nil, err
	}
	if err := r.expire(ctx, s); err != nil {
		return nil, err
	}
	err = s.Close()
	s = nil
	if err != nil {
		return nil, fmt.Errorf("bench: close: %w", err)
	}
	r.res.PeakRSSBytes = max(r.peak, PeakRSS())
	return &r.res, nil
}

func (r *runner) dir(name string) string { return filepath.Join(r.cfg.Dir, name) }

// remove deletes the store of dir: the directory, and what the backend keeps
// elsewhere for it.
func (r *runner) remove(ctx context.Context, dir string) error {
	err := os.RemoveAll(dir)
	if r.cfg.Backend.Remove != nil {
		err = errors.Join(err, r.cfg.Backend.Remove(ctx, dir))
	}
	if err != nil {
		return fmt.Errorf("bench: remove %s: %w", dir, err)
	}
	return nil
}

func (r *runner) open(ctx context.Context, dir string) (store.Store, error) {
	s, err := r.cfg.Backend.Open(ctx, dir, store.Options{Now: r.clock.Now, Logger: r.cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("bench: open %s store: %w", r.cfg.Backend.Name, err)
	}
	return s, nil
}

// phase runs fn as a named phase: it collects garbage first so one phase's
// leftovers do not count against the next, resets the peak RSS, times fn and
// records ops (fn's return) with the phase's peak RSS.
func (r *runner) phase(name string, total int64, fn func() (int64, error)) (time.Duration, error) {
	r.peak = max(r.peak, PeakRSS())
	runtime.GC()
	debug.FreeOSMemory()
	ResetPeakRSS()
	var end func()
	if r.cfg.PhaseHook != nil {
		end = r.cfg.PhaseHook(name)
	}
	r.cfg.Progress.Start(name, total)
	start := time.Now()
	ops, err := fn()
	d := time.Since(start)
	r.cfg.Progress.Finish()
	if end != nil {
		end()
	}
	if err != nil {
		return d, fmt.Errorf("bench: %s: %w", name, err)
	}
	p := Phase{Name: name, Seconds: round(d.Seconds(), 4), Ops: ops, PeakRSSBytes: PeakRSS()}
	r.res.Phases = append(r.res.Phases, p)
	r.cfg.Logger.Info("bench phase", "phase", name, "ops", ops, "seconds", round(p.Seconds, 3),
		"per_sec", int64(rate(ops, d)), "peak_rss_mib", p.PeakRSSBytes>>20)
	return d, nil
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func us(d time.Duration) float64 { return round(float64(d)/float64(time.Microsecond), 1) }

func round(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// generator measures the workload generator alone on one goroutine.
func (r *runner) generator() float64 {
	n := min(r.cfg.N, 200_000)
	batch := make([]record.ProviderRecord, r.cfg.BatchSize)
	start := time.Now()
	for i := int64(0); i < n; i += int64(len(batch)) {
		r.w.Fill(batch[:min(int64(len(batch)), n-i)], i)
	}
	return round(rate(n, time.Since(start)), 0)
}

// batches generates the workload in batches on its own goroutine, ahead of
// the consumer, so that generation overlaps the store calls being timed.
// Every batch is a fresh slice: a store may keep the records it is given.
// Once the channel is closed after the last batch, *raw holds the sum of the
// records' encoded sizes.
func (r *runner) batches(ctx context.Context, raw *int64) <-chan []record.ProviderRecord {
	ch := make(chan []record.ProviderRecord, 4)
	go func() {
		defer close(ch)
		var buf []byte
		for i := int64(0); i < r.w.N; i += int64(r.cfg.BatchSize) {
			b := r.w.Fill(make([]record.ProviderRecord, min(int64(r.cfg.BatchSize), r.w.N-i)), i)
			for _, rec := range b {
				buf = record.AppendProvider(buf[:0], rec)
				*raw += int64(len(buf))
			}
			select {
			case ch <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// ingest is the network path: every record in its own AddProviders call, from
// Concurrency goroutines, into a fresh store that is removed afterwards. Each
// goroutine generates its records as it goes, in chunks it claims in turn.
func (r *runner) ingest(ctx context.Context) error {
	dir := r.dir("ingest")
	if err := r.remove(ctx, dir); err != nil {
		return err
	}
	s, err := r.open(ctx, dir)
	if err != nil {
		return err
	}
	const chunk = 1000
	var next atomic.Int64
	add := func(ctx context.Context, rec record.ProviderRecord) error { return s.AddProviders(ctx, rec) }
	var wb *store.WriteBehind
	var failed atomic.Int64
	if !r.cfg.DirectIngest {
		wb = store.NewWriteBehind(s, store.WriteBehindOptions{
			Logger:    r.cfg.Logger,
			OnFailure: func(store.ProviderRecord, error) { failed.Add(1) },
		})
		add = func(ctx context.Context, rec record.ProviderRecord) error { return wb.Add(ctx, rec) }
	}
	d, err := r.phase("ingest", r.w.N, func() (int64, error) {
		err := r.parallel(ctx, func(ctx context.Context, _ int) error {
			batch := make([]record.ProviderRecord, chunk)
			for {
				start := next.Add(chunk) - chunk
				if start >= r.w.N {
					return nil
				}
				b := r.w.Fill(batch[:min(chunk, r.w.N-start)], start)
				for _, rec := range b {
					if err := add(ctx, rec); err != nil {
						return err
					}
				}
				r.cfg.Progress.Add(int64(len(b)))
			}
		})
		if wb != nil {
			err = errors.Join(err, wb.Close())
		}
		return r.w.N, err
	})
	if err == nil {
		err = r.checkIngested(ctx, s, failed.Load())
	}
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("bench: close: %w", cerr)
	}
	if !r.cfg.Keep {
		_ = r.remove(context.WithoutCancel(ctx), dir)
	}
	r.res.IngestRecordsPerSec = round(rate(r.w.N, d), 0)
	return err
}

// checkIngested fails with ErrMismatch unless the store holds every record
// of the workload: a write path that drops records must not post a rate.
func (r *runner) checkIngested(ctx context.Context, s store.Store, failed int64) error {
	st, err := s.Stats(ctx)
	if err != nil {
		return fmt.Errorf("bench: stats: %w", err)
	}
	if failed > 0 || st.ProviderRecords != r.w.N {
		return fmt.Errorf("%w: ingest stored %d of %d records (%d refused)", ErrMismatch, st.ProviderRecords, r.w.N, failed)
	}
	return nil
}

// bulk writes the workload in AddProviders batches into the store the later
// phases use.
func (r *runner) bulk(ctx context.Context) (store.Store, error) {
	dir := r.dir("store")
	if err := r.remove(ctx, dir); err != nil {
		return nil, err
	}
	s, err := r.open(ctx, dir)
	if err != nil {
		return nil, err
	}
	var raw int64
	d, err := r.phase("bulk-ingest", r.w.N, func() (int64, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for b := range r.batches(ctx, &raw) {
			if err := s.AddProviders(ctx, b...); err != nil {
				return 0, err
			}
			r.cfg.Progress.Add(int64(len(b)))
		}
		return r.w.N, ctx.Err()
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	r.res.RawBytes = raw
	r.res.BulkIngestRecordsPerSec = round(rate(r.w.N, d), 0)
	if r.res.RawPebbleRecordsPerSec > 0 {
		r.res.BulkVsRaw = round(r.res.BulkIngestRecordsPerSec/r.res.RawPebbleRecordsPerSec, 3)
	}
	return s, nil
}

// reopen closes the store, measures its directory, and times opening it
// again up to the first correct answer to a lookup.
func (r *runner) reopen(ctx context.Context, s store.Store) (store.Store, error) {
	var disk int64
	if r.cfg.Backend.DiskFromStats {
		st, err := s.Stats(ctx)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("bench: stats: %w", err)
		}
		disk = st.DiskBytes
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("bench: close: %w", err)
	}
	if !r.cfg.Backend.DiskFromStats {
		var err error
		if disk, err = dirBytes(r.dir("store")); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	r.res.DiskBytes = disk
	if r.res.RawBytes > 0 {
		r.res.DiskRatio = round(float64(disk)/float64(r.res.RawBytes), 3)
	}
	var s2 store.Store
	d, err := r.phase("reopen", 1, func() (int64, error) {
		var err error
		if s2, err = r.open(ctx, r.dir("store")); err != nil {
			return 0, err
		}
		_, err = r.lookupChecked(ctx, s2, 0)
		return 1, err
	})
	if err != nil {
		if s2 != nil {
			_ = s2.Close()
		}
		return nil, err
	}
	r.res.ReopenFirstAnswerMs = round(float64(d)/float64(time.Millisecond), 2)
	return s2, nil
}

// lookupChecked looks key j up and checks the answer against the workload:
// every provider of the key, each with both addresses.
func (r *runner) lookupChecked(ctx context.Context, s store.Store, j int64) ([]record.ProviderRecord, error) {
	recs, err := s.Providers(ctx, r.w.Key(j), 0)
	if err != nil {
		return nil, err
	}
	if _, want := r.w.RecordsOf(j); int64(len(recs)) != want {
		return nil, fmt.Errorf("%w: key %d has %d providers, want %d", ErrMismatch, j, len(recs), want)
	}
	for _, rec := range recs {
		if len(rec.Addrs) != 2 {
			return nil, fmt.Errorf("%w: key %d provider %s has %d addresses, want 2", ErrMismatch, j, rec.Provider, len(rec.Addrs))
		}
	}
	return recs, nil
}

// parallel runs fn on Concurrency goroutines and returns the first error.
func (r *runner) parallel(ctx context.Context, fn func(ctx context.Context, g int) error) error {
	return r.parallelN(ctx, r.cfg.Concurrency, fn)
}

func (r *runner) parallelN(ctx context.Context, n int, fn func(ctx context.Context, g int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			if err := fn(ctx, g); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// lookupLoop runs ops lookups on n goroutines, of existing keys (checked
// against the workload) or of missing keys, and returns their latencies.
func (r *runner) lookupLoop(ctx context.Context, s store.Store, n int, ops int64, missing bool) (*Histogram, error) {
	hists := make([]*Histogram, n)
	err := r.parallelN(ctx, n, func(ctx context.Context, g int) error {
		h := new(Histogram)
		hists[g] = h
		rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(g)))
		mine := ops / int64(n)
		if int64(g) < ops%int64(n) {
			mine++
		}
		keys := r.w.Keys()
		for k := int64(0); k < mine; k++ {
			j := rng.Int64N(keys)
			var err error
			if missing {
				key := r.w.MissingKey(j)
				start := time.Now()
				var recs []record.ProviderRecord
				recs, err = s.Providers(ctx, key, 0)
				h.Record(time.Since(start))
				if err == nil && len(recs) != 0 {
					err = fmt.Errorf("%w: missing key %d has %d providers", ErrMismatch, j, len(recs))
				}
			} else {
				start := time.Now()
				_, err = r.lookupChecked(ctx, s, j)
				h.Record(time.Since(start))
			}
			if err != nil {
				return err
			}
			if k%256 == 255 {
				r.cfg.Progress.Add(256)
			}
		}
		return nil
	})
	total := new(Histogram)
	for _, h := range hists {
		if h != nil {
			total.Merge(h)
		}
	}
	return total, err
}

// lookups measures lookups of existing keys (Concurrency goroutines, then one
// goroutine) and of missing keys, on the idle store.
func (r *runner) lookups(ctx context.Context, s store.Store) error {
	L := r.cfg.Lookups
	var hit, serial, miss *Histogram
	d, err := r.phase("lookup-hit", L, func() (int64, error) {
		var err error
		hit, err = r.lookupLoop(ctx, s, r.cfg.Concurrency, L, false)
		return L, err
	})
	if err != nil {
		return err
	}
	r.res.LookupHitPerSec = round(rate(L, d), 0)
	r.res.LookupHitP50Us = us(hit.Quantile(0.5))
	r.res.LookupHitP99Us = us(hit.Quantile(0.99))
	r.res.LookupHitP999Us = us(hit.Quantile(0.999))

	Ls := max(1, L/8)
	if _, err = r.phase("lookup-hit-serial", Ls, func() (int64, error) {
		var err error
		serial, err = r.lookupLoop(ctx, s, 1, Ls, false)
		return Ls, err
	}); err != nil {
		return err
	}
	r.res.LookupHitSerialP99Us = us(serial.Quantile(0.99))

	d, err = r.phase("lookup-miss", L, func() (int64, error) {
		var err error
		miss, err = r.lookupLoop(ctx, s, r.cfg.Concurrency, L, true)
		return L, err
	})
	if err != nil {
		return err
	}
	r.res.LookupMissPerSec = round(rate(L, d), 0)
	r.res.LookupMissP50Us = us(miss.Quantile(0.5))
	r.res.LookupMissP99Us = us(miss.Quantile(0.99))
	return nil
}

// scan walks the whole store in pages of BatchSize and checks it sees N
// records.
func (r *runner) scan(ctx context.Context, s store.Store) error {
	d, err := r.phase("scan", r.w.N, func() (int64, error) {
		var n int64
		for p, err := range store.Pages(ctx, s, store.ScanOptions{Kind: store.Providers, Limit: r.cfg.BatchSize}) {
			if err != nil {
				return n, err
			}
			n += int64(len(p.Providers))
			r.cfg.Progress.Add(int64(len(p.Providers)))
		}
		if n != r.w.N {
			return n, fmt.Errorf("%w: scan saw %d records, want %d", ErrMismatch, n, r.w.N)
		}
		return n, nil
	})
	r.res.ScanRecordsPerSec = round(rate(r.w.N, d), 0)
	return err
}

// expire advances the clock past the short-lived records (10 % of N) and
// removes them with Expire calls of ExpireBatch, while one goroutine looks up
// existing keys and records their latency.
func (r *runner) expire(ctx context.Context, s store.Store) error {
	want := r.w.ShortRecords()
	r.clock.offset.Store(int64(r.w.ShortTTL + time.Hour))
	now := r.clock.Now()

	var removed int64
	var hist *Histogram
	d, err := r.phase("expire", want, func() (int64, error) {
		ctx, cancel := context.WithCancel(ctx)
		var lerr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			hist, lerr = r.lookupsUntil(ctx, s)
		}()
		var err error
		for {
			var n int
			n, err = s.Expire(ctx, now, r.cfg.ExpireBatch)
			removed += int64(n)
			r.cfg.Progress.Add(int64(n))
			if err != nil || n == 0 {
				break
			}
		}
		cancel()
		<-done
		if err == nil {
			err = lerr
		}
		return removed, err
	})
	if err != nil {
		return err
	}
	if removed != want {
		return fmt.Errorf("bench: expire: %w: removed %d records, want %d", ErrMismatch, removed, want)
	}
	r.res.ExpiredRecords = removed
	r.res.ExpireRecordsPerSec = round(rate(removed, d), 0)
	r.res.ExpireLookups = int64(hist.Count())
	r.res.ExpireLookupP99Us = us(hist.Quantile(0.99))
	if r.res.LookupHitSerialP99Us > 0 {
		r.res.ExpireLookupRatio = round(r.res.ExpireLookupP99Us/r.res.LookupHitSerialP99Us, 2)
	}
	return nil
}

// lookupsUntil looks up existing keys until ctx is done. The short-lived
// records may or may not be gone yet, so answers are not checked here.
func (r *runner) lookupsUntil(ctx context.Context, s store.Store) (*Histogram, error) {
	h := new(Histogram)
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 1<<32))
	keys := r.w.Keys()
	for ctx.Err() == nil {
		key := r.w.Key(rng.Int64N(keys))
		start := time.Now()
		_, err := s.Providers(ctx, key, 0)
		if err != nil {
			if ctx.Err() != nil {
				break // the last lookup, cut short when Expire finished
			}
			return h, err
		}
		h.Record(time.Since(start))
	}
	return h, nil
}
