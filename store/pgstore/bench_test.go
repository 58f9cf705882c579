package pgstore_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pgstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// The benchmarks measure the store workloads at N records (default 1 M; set
// KADSTORE_BENCH_N), against the database of KADSTORE_TEST_POSTGRES:
//
//	go test ./store/pgstore/ -run '^$' -bench . -benchtime 1x
//
// BenchmarkIngest loads N records into an empty schema. The others share a
// schema loaded once per run with N records (built by the first of them, and
// dropped at the end of the run).

// benchN returns N.
func benchN(b *testing.B) int {
	n := 1_000_000
	if v := os.Getenv("KADSTORE_BENCH_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("KADSTORE_BENCH_N=%q: want a positive number", v)
		}
	}
	return n
}

// benchBatch is the batch size of bulk loads.
const benchBatch = 5000

// benchStart is the benchmarks' clock: a whole millisecond, fixed, so that
// records made for one run are valid in the next.
var benchStart = time.Now().Truncate(time.Second)

// benchRecords returns n provider records drawn from seed: n keys, each
// provided by one of 10 000 peers, expiring ttl after benchStart.
func benchRecords(seed uint64, n int, ttl time.Duration) []store.ProviderRecord {
	rng := rand.New(rand.NewPCG(seed, seed))
	peers := make([]peer.ID, 10_000)
	for i := range peers {
		peers[i] = storetest.RandomPeer(rng)
	}
	recs := make([]store.ProviderRecord, n)
	for i := range recs {
		recs[i] = storetest.NewProviderRecord(rng, storetest.RandomKey(rng), peers[rng.IntN(len(peers))], benchStart.Add(ttl))
	}
	return recs
}

// serverCPU returns the CPU time used so far by the processes named
// "postgres" on this machine (the server under test when it is local; 0
// otherwise). Backends that have exited are not counted, so it is read while
// the store's connections are open.
func serverCPU() time.Duration {
	entries, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open || string(b[open+1:close]) != "postgres" {
			continue
		}
		f := strings.Fields(string(b[close+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// clientCPU returns the CPU time this process has used.
func clientCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter adds up the CPU time the server and the client spend in measured
// sections. On a machine shared with other work, CPU time per record says
// what the workload costs, where wall time says what it got.
type cpuMeter struct{ server, client, server0, client0 time.Duration }

func (m *cpuMeter) start() { m.server0, m.client0 = serverCPU(), clientCPU() }

func (m *cpuMeter) stop() {
	m.server += serverCPU() - m.server0
	m.client += clientCPU() - m.client0
}

func (m *cpuMeter) report(b *testing.B, records int) {
	if m.server > 0 {
		b.ReportMetric(float64(m.server.Microseconds())/float64(records), "server-µs/record")
	}
	b.ReportMetric(float64(m.client.Microseconds())/float64(records), "client-µs/record")
}

// load adds recs in batches of benchBatch from the given number of
// goroutines, and returns how long it took.
func load(b *testing.B, s *pgstore.Store, recs []store.ProviderRecord, writers int) time.Duration {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(benchBatch)) - benchBatch
				if i >= len(recs) {
					return
				}
				if err := s.AddProviders(ctx, recs[i:min(i+benchBatch, len(recs))]...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func benchOpen(b *testing.B, schema string, clock *storetest.Clock) *pgstore.Store {
	b.Helper()
	s, err := pgstore.Open(context.Background(), testDSN(b), pgstore.Options{
		Options:  store.Options{Now: clock.Now, Limits: store.Limits{MaxRecords: -1}},
		Schema:   schema,
		MaxConns: 16,
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchDrop drops a benchmark's schema.
func benchDrop(dsn, schema string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	return err
}

// vacuum brings the planner's statistics and the visibility map up to date,
// as autovacuum would on a running node.
func vacuum(b *testing.B, s *pgstore.Store, schema string) {
	b.Helper()
	for _, table := range []string{"provider_records", "value_records", "record_counts"} {
		if _, err := s.Pool().Exec(context.Background(), "VACUUM ANALYZE "+pgx.Identifier{schema, table}.Sanitize()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest: bulk load of N provider records into an empty schema, in
// batches of 5000, from 1 and from 2 goroutines.
func BenchmarkIngest(b *testing.B) {
	n := benchN(b)
	recs := benchRecords(1, n, 24*time.Hour)
	for _, writers := range []int{1, 2} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			dsn := testDSN(b)
			var (
				elapsed time.Duration
				cpu     cpuMeter
			)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				schema := fmt.Sprintf("kadstore_bench_ingest_%d", i)
				if err := benchDrop(dsn, schema); err != nil {
					b.Fatal(err)
				}
				s := benchOpen(b, schema, storetest.NewClock(benchStart))
				b.StartTimer()
				cpu.start()
				elapsed += load(b, s, recs, writers)
				cpu.stop()
				b.StopTimer()
				s.Close()
				if err := benchDrop(dsn, schema); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "records/s")
			cpu.report(b, n*b.N)
		})
	}
}

// fixture is the schema the lookup and expiry benchmarks share: N records
// expiring 24 h after benchStart.
var fixture struct {
	once   sync.Once
	schema string
	keys   [][]byte
	err    error
}

const fixtureSchema = "kadstore_bench_fixture"

// loadFixture builds the shared schema once per run.
func loadFixture(b *testing.B) [][]byte {
	b.Helper()
	n := benchN(b)
	fixture.once.Do(func() {
		dsn := testDSN(b)
		if fixture.err = benchDrop(dsn, fixtureSchema); fixture.err != nil {
			return
		}
		fixture.schema = fixtureSchema
		recs := benchRecords(2, n, 24*time.Hour)
		s := benchOpen(b, fixtureSchema, storetest.NewClock(benchStart))
		defer s.Close()
		d := load(b, s, recs, 2)
		vacuum(b, s, fixtureSchema)
		b.Logf("fixture: %d records loaded in %v", n, d.Round(time.Millisecond))
		for _, r := range recs {
			fixture.keys = append(fixture.keys, r.Key)
		}
	})
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	return fixture.keys
}

// BenchmarkProviders: Providers lookups of random stored keys from 8
// goroutines on N records; reports the latency percentiles.
func BenchmarkProviders(b *testing.B) {
	keys := loadFixture(b)
	s := benchOpen(b, fixtureSchema, storetest.NewClock(benchStart))
	defer s.Close()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		seed      atomic.Uint64
	)
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // 8 goroutines
	var cpu cpuMeter
	b.ResetTimer()
	cpu.start()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 0))
		var mine []time.Duration
		ctx := context.Background()
		for pb.Next() {
			key := keys[rng.IntN(len(keys))]
			start := time.Now()
			recs, err := s.Providers(ctx, key, 0)
			mine = append(mine, time.Since(start))
			if err != nil || len(recs) == 0 {
				b.Errorf("Providers: %d records, %v", len(recs), err)
				return
			}
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	cpu.stop()
	cpu.report(b, b.N)
	reportLatencies(b, latencies)
}

func reportLatencies(b *testing.B, l []time.Duration) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	q := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))]) / 1e6 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkScan: a whole-keyspace scan in pages of 1000 over N records.
func BenchmarkScan(b *testing.B) {
	keys := loadFixture(b)
	s := benchOpen(b, fixtureSchema, storetest.NewClock(benchStart))
	defer s.Close()
	var cpu cpuMeter
	b.ResetTimer()
	cpu.start()
	for i := 0; i < b.N; i++ {
		n := 0
		for _, err := range store.ScanProviders(context.Background(), s, store.ScanOptions{Limit: 1000}) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != len(keys) {
			b.Fatalf("scan: %d records, want %d", n, len(keys))
		}
	}
	cpu.stop()
	b.ReportMetric(float64(len(keys)*b.N)/b.Elapsed().Seconds(), "records/s")
	cpu.report(b, len(keys)*b.N)
}

// BenchmarkExpire: N/10 records that have expired, among the N live records
// of the fixture, removed by one Expire call.
func BenchmarkExpire(b *testing.B) {
	keys := loadFixture(b)
	clock := storetest.NewClock(benchStart)
	s := benchOpen(b, fixtureSchema, clock)
	defer s.Close()
	expiring := benchRecords(3, len(keys)/10, time.Hour)
	var (
		elapsed time.Duration
		cpu     cpuMeter
	)
	removed := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		clock.Set(benchStart)
		load(b, s, expiring, 2)
		vacuum(b, s, fixtureSchema)
		clock.Set(benchStart.Add(2 * time.Hour))
		b.StartTimer()
		start := time.Now()
		cpu.start()
		n, err := s.Expire(context.Background(), clock.Now(), 0)
		cpu.stop()
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if n != len(expiring) {
			b.Fatalf("Expire removed %d records, want %d", n, len(expiring))
		}
		removed += n
	}
	b.ReportMetric(float64(removed)/elapsed.Seconds(), "deleted/s")
	cpu.report(b, removed)
}
