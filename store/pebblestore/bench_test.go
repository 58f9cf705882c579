package pebblestore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// The benchmarks use the workload of `kadstore bench`: 34-byte keys (SHA-256
// multihashes), one key in five with 5 providers and the others with one,
// 38-byte peer IDs (Ed25519 form) from a pool of 10 000, two addresses per
// record. Benchmarks over a prefilled store use PEBBLESTORE_BENCH_RECORDS
// records (default 200 000), with default Options.
//
//	go test -run '^$' -bench . -benchtime 200000x ./store/pebblestore/

var benchStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func benchRecords() int {
	if v := os.Getenv("PEBBLESTORE_BENCH_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil && n > 0 {
			return n
		}
	}
	return 200_000
}

// workload generates the records of the benchmark workload, in a fixed order.
type workload struct {
	seed    uint64
	keyN    uint64 // keys generated
	pending int    // providers left for the current key
	key     []byte
	peers   []peer.ID
	addrs   [][]ma.Multiaddr
	expires time.Time
}

func newWorkload(seed uint64, expires time.Time) *workload {
	w := &workload{seed: seed, expires: expires}
	for i := range 10_000 {
		d := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("peer"), uint64(i)))
		id := append([]byte{0x00, 36, 0x08, 0x01, 0x12, 0x20}, d[:]...) // identity multihash of an Ed25519 key
		w.peers = append(w.peers, peer.ID(id))
		w.addrs = append(w.addrs, []ma.Multiaddr{
			ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", byte(i>>16), byte(i>>8), byte(i))),
			ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/udp/4001/quic-v1", byte(i>>16), byte(i>>8), byte(i))),
		})
	}
	return w
}

// keyAt returns the workload's i-th key.
func (w *workload) keyAt(i uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], w.seed)
	binary.BigEndian.PutUint64(b[8:], i)
	d := sha256.Sum256(b[:])
	return append([]byte{0x12, 0x20}, d[:]...)
}

func (w *workload) next() store.ProviderRecord {
	if w.pending == 0 {
		w.key = w.keyAt(w.keyN)
		w.keyN++
		w.pending = 1
		if w.keyN%5 == 0 {
			w.pending = 5
		}
	}
	w.pending--
	i := (w.keyN*7 + uint64(w.pending)*1013) % uint64(len(w.peers))
	return store.ProviderRecord{Key: w.key, Provider: w.peers[i], Addrs: w.addrs[i], Expires: w.expires}
}

func (w *workload) batch(dst []store.ProviderRecord, n int) []store.ProviderRecord {
	dst = dst[:0]
	for range n {
		dst = append(dst, w.next())
	}
	return dst
}

func openBench(b *testing.B, dir string, clock func() time.Time) *Store {
	b.Helper()
	s, err := Open(dir, Options{Options: store.Options{Now: clock, Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// fill adds n workload records in batches of 1000.
func fill(b *testing.B, s *Store, w *workload, n int) {
	b.Helper()
	var buf []store.ProviderRecord
	for done := 0; done < n; done += len(buf) {
		buf = w.batch(buf, min(1000, n-done))
		if err := s.AddProviders(context.Background(), buf...); err != nil {
			b.Fatal(err)
		}
	}
}

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

func reportRate(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unit)
}

// cpuTime returns the CPU time the process has used, background pebble work
// included. The benchmarks report it per record as well as the rate, since
// the rate on a shared machine depends on what else runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration, n int) {
	b.ReportMetric(float64(cpuTime()-since)/float64(n), "cpu-ns/op")
}

// BenchmarkAddProviders writes b.N new records: in calls of 1000 records,
// and in single-record calls from 8 goroutines (group commit). Raw is pebble
// alone writing the same bytes (key and codec encoding) in batches of 1000,
// the yardstick for the first.
func BenchmarkAddProviders(b *testing.B) {
	b.Run("Batch1000", func(b *testing.B) {
		s := openBench(b, b.TempDir(), clockAt(benchStart))
		defer s.Close()
		w := newWorkload(1, benchStart.Add(24*time.Hour))
		var buf []store.ProviderRecord
		b.ResetTimer()
		cpu := cpuTime()
		for done := 0; done < b.N; done += len(buf) {
			buf = w.batch(buf, min(1000, b.N-done))
			if err := s.AddProviders(context.Background(), buf...); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportCPU(b, cpu, b.N)
		reportRate(b, b.N, "records/s")
		reportDisk(b, s, b.N)
	})
	b.Run("Raw1000", func(b *testing.B) {
		o := Options{}
		o.EnsureDefaults()
		db, err := pebble.Open(b.TempDir(), o.pebbleOptions(nil, newFaults(o.Logger)))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		w := newWorkload(1, benchStart.Add(24*time.Hour))
		var buf []store.ProviderRecord
		var key, val []byte
		b.ResetTimer()
		cpu := cpuTime()
		for done := 0; done < b.N; done += len(buf) {
			buf = w.batch(buf, min(1000, b.N-done))
			batch := db.NewBatch()
			for _, r := range buf {
				k := record.KadKeyOf(r.Key)
				key = provKey(key[:0], &k, r.Provider)
				val = record.AppendProvider(val[:0], r)
				batch.Set(key, val, nil)
			}
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch.Close()
		}
		b.StopTimer()
		reportCPU(b, cpu, b.N)
		reportRate(b, b.N, "records/s")
	})
	for _, sync := range []bool{false, true} {
		name := "Single8"
		if sync {
			name = "Single8Sync"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{Options: store.Options{Now: clockAt(benchStart), Logger: slog.New(slog.DiscardHandler)}, Sync: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w := newWorkload(2, benchStart.Add(24*time.Hour))
			var next atomic.Uint64
			b.SetParallelism(4) // 8 goroutines on 2 CPUs
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					r := store.ProviderRecord{Key: w.keyAt(i), Provider: w.peers[i%uint64(len(w.peers))], Addrs: w.addrs[i%uint64(len(w.addrs))], Expires: w.expires}
					if err := s.AddProviders(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportCPU(b, cpu, b.N)
			reportRate(b, b.N, "records/s")
		})
	}
}

// reportDisk reports the disk use after a flush and a full compaction, per
// record and relative to the records' codec bytes.
func reportDisk(b *testing.B, s *Store, n int) {
	if n < 10_000 {
		return
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		b.Fatal(err)
	}
	w := newWorkload(1, benchStart.Add(24*time.Hour))
	var raw int
	for range n {
		raw += len(record.MarshalProvider(w.next()))
	}
	disk, err := s.db.EstimateDiskUsage([]byte{0}, []byte{0xff})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(disk)/float64(n), "diskB/record")
	b.ReportMetric(float64(disk)/float64(raw), "disk/raw")
}

// prefilled opens a store in a directory shared by the benchmarks of one
// run, filled with benchRecords() records once.
var prefilled struct {
	once sync.Once
	dir  string
	n    int
	err  error
}

func openPrefilled(b *testing.B) (*Store, *workload) {
	b.Helper()
	prefilled.once.Do(func() {
		prefilled.dir, prefilled.err = os.MkdirTemp("", "pebblestore-bench-")
		if prefilled.err != nil {
			return
		}
		prefilled.n = benchRecords()
		s := openBench(b, prefilled.dir, clockAt(benchStart))
		fill(b, s, newWorkload(3, benchStart.Add(24*time.Hour)), prefilled.n)
		// Measure a settled store, not one busy compacting what was just
		// written.
		if prefilled.err = s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); prefilled.err != nil {
			return
		}
		prefilled.err = s.Close()
	})
	if prefilled.err != nil {
		b.Fatal(prefilled.err)
	}
	return openBench(b, prefilled.dir, clockAt(benchStart)), newWorkload(3, benchStart.Add(24*time.Hour))
}

// BenchmarkReopen opens the prefilled store and answers a first lookup.
func BenchmarkReopen(b *testing.B) {
	s, _ := openPrefilled(b)
	s.Close()
	b.ResetTimer()
	for range b.N {
		s := openBench(b, prefilled.dir, clockAt(benchStart))
		if _, err := s.Providers(context.Background(), []byte("first"), 0); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

func TestMain(m *testing.M) {
	if ChildMain != nil {
		if code, ok := ChildMain(); ok {
			os.Exit(code)
		}
	}
	code := m.Run()
	if prefilled.dir != "" {
		os.RemoveAll(prefilled.dir)
	}
	os.Exit(code)
}

// BenchmarkProviders looks up keys of the prefilled store from 8 goroutines:
// keys that are stored (Hit) and keys that are not (Miss). It reports the
// rate and the 99th percentile latency.
func BenchmarkProviders(b *testing.B) {
	s, w := openPrefilled(b)
	defer s.Close()
	keys := int(uint64(prefilled.n) * 10 / 18) // 1.8 records a key
	for _, miss := range []bool{false, true} {
		name := "Hit"
		if miss {
			name = "Miss"
		}
		b.Run(name, func(b *testing.B) {
			var mu sync.Mutex
			var lat []time.Duration
			var seq atomic.Uint64
			b.SetParallelism(4)
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					i := seq.Add(1) * 2654435761 % uint64(keys)
					key := w.keyAt(i)
					if miss {
						key[2] ^= 0xff
					}
					t0 := time.Now()
					got, err := s.Providers(context.Background(), key, 0)
					mine = append(mine, time.Since(t0))
					if err != nil || (len(got) == 0) != miss {
						b.Errorf("Providers: %d records, %v", len(got), err)
						return
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			reportCPU(b, cpu, b.N)
			reportRate(b, b.N, "lookups/s")
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// BenchmarkScan scans every record of the prefilled store, in pages of
// 10 000, once per op.
func BenchmarkScan(b *testing.B) {
	s, _ := openPrefilled(b)
	defer s.Close()
	b.ResetTimer()
	cpu := cpuTime()
	total := 0
	for range b.N {
		n := 0
		for p, err := range store.Pages(context.Background(), s, store.ScanOptions{Kind: store.Providers, Limit: 10_000}) {
			if err != nil {
				b.Fatal(err)
			}
			n += len(p.Providers)
		}
		if n != prefilled.n {
			b.Fatalf("scanned %d records, want %d", n, prefilled.n)
		}
		total += n
	}
	reportCPU(b, cpu, total)
	reportRate(b, total, "records/s")
}

// BenchmarkExpire removes the 10% of a store's records that expired; each op
// is one Expire call over a freshly filled store of benchRecords() records.
func BenchmarkExpire(b *testing.B) {
	n := benchRecords()
	removed := 0
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		s := openBench(b, b.TempDir(), clockAt(benchStart))
		w := newWorkload(4, time.Time{})
		var buf []store.ProviderRecord
		for done := 0; done < n; done += len(buf) {
			buf = w.batch(buf, min(1000, n-done))
			for i := range buf {
				buf[i].Expires = benchStart.Add(24 * time.Hour)
				if (done+i)%10 == 0 {
					buf[i].Expires = benchStart.Add(time.Hour + time.Duration(done+i)*time.Millisecond)
				}
			}
			if err := s.AddProviders(context.Background(), buf...); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		cpu0 := cpuTime()
		got, err := s.Expire(context.Background(), benchStart.Add(12*time.Hour), 0)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime() - cpu0
		removed += got
		s.Close()
	}
	b.ReportMetric(float64(cpu)/float64(removed), "cpu-ns/op")
	reportRate(b, removed, "deleted/s")
}
