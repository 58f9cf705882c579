package pebblestore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
	"github.com/kadstore/kadstore/store/storetest"
)

// The durability tests write numbered records from several goroutines and
// note each one whose call returned nil (acknowledged); after a crash, every
// acknowledged record must be in the store. Record i is a pure function of
// i, so the side that checks needs only the numbers.

// ackProvider is provider record i (i%5 != 4).
func ackProvider(i int64, now time.Time) store.ProviderRecord {
	rng := rand.New(rand.NewPCG(uint64(i), 0x6475726162))
	return store.ProviderRecord{
		Key:      storetest.RandomKey(rng),
		Provider: storetest.RandomPeer(rng),
		Addrs:    []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", byte(i>>8), byte(i)))},
		Expires:  now.Add(24 * time.Hour),
	}
}

// ackValue is value record i (i%5 == 4).
func ackValue(i int64, now time.Time) store.ValueRecord {
	rng := rand.New(rand.NewPCG(uint64(i), 0x76616c7565))
	return store.ValueRecord{
		Key:       fmt.Appendf(nil, "/test/durable-%d", i),
		Value:     fmt.Appendf(nil, "value %d", i),
		Publisher: storetest.RandomPeer(rng),
		Received:  now,
		Expires:   now.Add(24 * time.Hour),
	}
}

// writeNumbered writes record i to s.
func writeNumbered(ctx context.Context, s store.Store, i int64) error {
	now := time.Now()
	if i%5 == 4 {
		return s.PutValue(ctx, ackValue(i, now))
	}
	return s.AddProviders(ctx, ackProvider(i, now))
}

// missingNumbered returns the numbers of acked records that s does not hold.
func missingNumbered(t *testing.T, s store.Store, acked []int64) []int64 {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	var missing []int64
	for _, i := range acked {
		if i%5 == 4 {
			want := ackValue(i, now)
			got, err := s.GetValue(ctx, want.Key)
			if errors.Is(err, store.ErrNotFound) {
				missing = append(missing, i)
				continue
			}
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
			if string(got.Value) != string(want.Value) {
				t.Fatalf("record %d: value %q, want %q", i, got.Value, want.Value)
			}
			continue
		}
		want := ackProvider(i, now)
		provs, err := s.Providers(ctx, want.Key, 0)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		found := false
		for _, p := range provs {
			if p.Provider == want.Provider && len(p.Addrs) == 1 && p.Addrs[0].Equal(want.Addrs[0]) {
				found = true
			}
		}
		if !found {
			missing = append(missing, i)
		}
	}
	return missing
}

// writers runs 8 goroutines writing records first, first+1, … to s until
// ctx is done, and calls ack with the number of every write that returned
// nil, after it returned.
func writers(ctx context.Context, s store.Store, first int64, ack func(int64)) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, 8)
	)
	next.Store(first)
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				err := writeNumbered(ctx, s, i)
				switch {
				case err == nil:
					ack(i)
				case ctx.Err() != nil:
					return
				default:
					errs <- fmt.Errorf("record %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Environment of the child process of TestKillNineLosesNothing.
const (
	killChildDir   = "PEBBLESTORE_KILL_CHILD_DIR"
	killChildFirst = "PEBBLESTORE_KILL_CHILD_FIRST"
)

func init() {
	pebblestore.ChildMain = func() (int, bool) {
		if os.Getenv(killChildDir) == "" {
			return 0, false
		}
		return runKillChild(), true
	}
}

// runKillChild is the child: it opens the store with default options and
// writes until it is killed, printing the number of each acknowledged write
// on stdout (one write(2) a line, after the call returned).
func runKillChild() int {
	first, err := strconv.ParseInt(os.Getenv(killChildFirst), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := pebblestore.Open(os.Getenv(killChildDir), pebblestore.Options{
		Options:   store.Options{Logger: slog.New(slog.DiscardHandler)},
		CacheSize: 4 << 20,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	err = writers(context.Background(), s, first, func(i int64) {
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.WriteString(strconv.FormatInt(i, 10) + "\n")
	})
	fmt.Fprintln(os.Stderr, err)
	return 2
}

// A write that returned nil survives kill -9 of the process, with the
// default options (no fsync): the test runs itself as a child process that
// writes from 8 goroutines, kills it with SIGKILL after a random number of
// acknowledged writes, and checks every acknowledged record after each
// restart, over several rounds on the same directory.
func TestKillNineLosesNothing(t *testing.T) {
	dir := t.TempDir()
	rng := storetest.NewRand(t)
	var acked []int64
	const rounds = 5
	for round := range rounds {
		first := int64(round) * 1_000_000
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), killChildDir+"="+dir, killChildFirst+"="+strconv.FormatInt(first, 10))
		var stderr bytesBuffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAt := 200 + rng.IntN(4000)
		lines := bufio.NewScanner(out)
		n := 0
		for lines.Scan() {
			i, err := strconv.ParseInt(lines.Text(), 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", lines.Text())
			}
			acked = append(acked, i)
			if n++; n == killAt {
				// Acknowledgements printed after this point still count:
				// the scan goes on until the pipe closes.
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
			}
		}
		werr := cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child stopped after %d acknowledged writes (%v):\n%s", round, n, werr, stderr.String())
		}
		s, err := pebblestore.Open(dir, pebblestore.Options{Options: store.Options{Logger: slog.New(slog.DiscardHandler)}})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		missing := missingNumbered(t, s, acked)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Fatalf("round %d: %d of %d acknowledged records lost after kill -9, first %v", round, len(missing), len(acked), missing[:min(5, len(missing))])
		}
		t.Logf("round %d: killed after %d acknowledged writes in the round; all %d so far present", round, n, len(acked))
	}
}

// bytesBuffer is a bytes.Buffer safe for the writes of exec's copying
// goroutine and the test's reads.
type bytesBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *bytesBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *bytesBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}

// crashAfterAcks writes to a store on a crashable in-memory filesystem from
// 8 goroutines, and once at least minAcks writes were acknowledged takes a
// copy of the filesystem as a power loss would leave it (only synced data,
// while the writers are still running), then opens that copy. It returns the
// records acknowledged before the copy and the reopened store.
func crashAfterAcks(t *testing.T, syncWrites bool, minAcks int) ([]int64, store.Store) {
	t.Helper()
	return crashAfterAcksKeeping(t, syncWrites, minAcks, vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
}

// crashAfterAcksKeeping is crashAfterAcks with a crash that keeps the
// unsynced data cfg says (a power loss writes some pages back, in any order).
func crashAfterAcksKeeping(t *testing.T, syncWrites bool, minAcks int, cfg vfs.CrashCloneCfg) ([]int64, store.Store) {
	t.Helper()
	fs := vfs.NewCrashableMem()
	opts := pebblestore.Options{
		Options:   store.Options{Logger: slog.New(slog.DiscardHandler)},
		CacheSize: 4 << 20,
		Sync:      syncWrites,
		FS:        fs,
	}
	s, err := pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		acked   []int64
		enough  = make(chan struct{})
		ctx, cf = context.WithCancel(context.Background())
		done    = make(chan error, 1)
	)
	go func() {
		done <- writers(ctx, s, 0, func(i int64) {
			mu.Lock()
			defer mu.Unlock()
			acked = append(acked, i)
			if len(acked) == minAcks {
				close(enough)
			}
		})
	}()
	select {
	case <-enough:
	case err := <-done:
		t.Fatalf("writers stopped: %v", err)
	}
	mu.Lock()
	before := append([]int64(nil), acked...)
	mu.Unlock()
	crashed := fs.CrashClone(cfg)
	cf()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	opts.FS = crashed
	s2, err := pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatalf("open after power loss: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return before, s2
}

// With Options.Sync, a write that returned nil survives power loss: the
// filesystem copy keeps only what was fsynced.
func TestSyncSurvivesPowerLoss(t *testing.T) {
	acked, s := crashAfterAcks(t, true, 3000)
	if missing := missingNumbered(t, s, acked); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged records lost with Sync, first %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
}

// The control of TestSyncSurvivesPowerLoss: without Options.Sync the log is
// never fsynced while written, so the same crash loses acknowledged writes,
// as the Options.Sync documentation says. (It also shows that the crashable
// filesystem does drop unsynced data, so the test above can fail.) The store
// itself opens intact.
func TestDefaultPowerLossLosesOnlyRecentWrites(t *testing.T) {
	acked, s := crashAfterAcks(t, false, 3000)
	missing := missingNumbered(t, s, acked)
	if len(missing) == 0 {
		t.Fatalf("all %d acknowledged records survived a power loss without Sync: the crash copy kept unsynced data", len(acked))
	}
	t.Logf("without Sync, a power loss lost %d of %d acknowledged records", len(missing), len(acked))
	// The store still works: a new write is stored.
	r := ackProvider(1<<40, time.Now())
	if err := s.AddProviders(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if got := missingNumbered(t, s, []int64{1 << 40}); len(got) != 0 {
		t.Fatal("a write after the power loss is missing")
	}
}

// Close leaves one write-ahead log (pebble keeps older ones to reuse their
// files), and the records are all there after reopening.
func TestCloseRemovesRecycledLogs(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(store.Options{Logger: slog.New(slog.DiscardHandler)}) // 1 MiB memtables
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 20000 // several memtables, so several logs
	for i := range int64(n) {
		if err := writeNumbered(ctx, s, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 {
		t.Errorf("%d write-ahead logs after Close, want 1: %v", len(logs), logs)
	}
	s, err = pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all := make([]int64, n)
	for i := range all {
		all[i] = int64(i)
	}
	if missing := missingNumbered(t, s, all); len(missing) > 0 {
		t.Fatalf("%d of %d records missing after reopening, first %v", len(missing), n, missing[:min(5, len(missing))])
	}
}

// A power loss leaves some of the unsynced pages of the log written and
// others not, in no particular order. Without Options.Sync the store must
// still open, with the acknowledged writes up to the first missing page;
// with it, with every acknowledged write.
func TestPowerLossWithPartialWritebackOpens(t *testing.T) {
	for _, syncWrites := range []bool{false, true} {
		for seed := range uint64(8) {
			cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 7))}
			acked, s := crashAfterAcksKeeping(t, syncWrites, 2000, cfg)
			missing := missingNumbered(t, s, acked)
			if syncWrites && len(missing) > 0 {
				t.Errorf("Sync, seed %d: %d of %d acknowledged records lost", seed, len(missing), len(acked))
			}
		}
	}
}

// A store at a format whose log records claim fsynced offsets (as an earlier
// kadstore created them) opens, and Open warns that without Sync a power loss
// can leave its log unreadable; a store this version creates gets no warning.
func TestOpenWarnsAboutSyncOffsetFormat(t *testing.T) {
	for _, old := range []bool{true, false} {
		dir := t.TempDir()
		if old {
			if err := pebblestore.CreateAtFormat(dir, pebble.FormatNewest); err != nil {
				t.Fatal(err)
			}
		}
		var logs bytesBuffer
		s, err := pebblestore.Open(dir, pebblestore.Options{Options: store.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddProviders(context.Background(), ackProvider(1, time.Now())); err != nil {
			t.Fatal(err)
		}
		s.Close()
		warned := strings.Contains(logs.String(), "records fsynced log offsets")
		if warned != old {
			t.Errorf("store at the newest format %t: warned %t; log:\n%s", old, warned, logs.String())
		}
	}
}
