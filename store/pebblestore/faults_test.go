package pebblestore_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// flipBytes flips n bytes of the file at path, at offsets in [from, to) of
// its size, chosen by seed.
func flipBytes(t *testing.T, fs vfs.FS, path string, n int, from, to float64, seed uint64) {
	t.Helper()
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	rng := rand.New(rand.NewPCG(seed, 1))
	lo, hi := int64(float64(size)*from), int64(float64(size)*to)
	for range n {
		off := lo + rng.Int64N(hi-lo)
		var b [1]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xa5
		if _, err := f.WriteAt(b[:], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// filesIn returns the names in dir with the suffix, largest first.
func filesIn(t *testing.T, dir, suffix string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		name string
		size int64
	}
	var fs []file
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			fs = append(fs, file{e.Name(), info.Size()})
		}
	}
	slices.SortFunc(fs, func(a, b file) int { return int(b.size - a.size) })
	var names []string
	for _, f := range fs {
		names = append(names, f.name)
	}
	return names
}

// writeSequential writes records [0, n) one call each.
func writeSequential(t *testing.T, s store.Store, n int64) {
	t.Helper()
	for i := range n {
		if err := writeNumbered(context.Background(), s, i); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

// damagedStore writes n provider records (ackProvider(i*5)) into a store in
// a new directory, closes it, and flips 4 bytes in the data blocks of its
// largest sstable.
func damagedStore(t *testing.T) (dir string, opts pebblestore.Options, n int64, now time.Time) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	opts = testOptions(store.Options{Logger: slog.New(slog.DiscardHandler)})
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	n, now = 20000, time.Now()
	for i := int64(0); i < n; i += 100 {
		var batch []store.ProviderRecord
		for j := i; j < i+100; j++ {
			batch = append(batch, ackProvider(j*5, now)) // providers only
		}
		if err := s.AddProviders(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tables := filesIn(t, dir, ".sst")
	if len(tables) == 0 {
		t.Fatal("no sstables")
	}
	flipBytes(t, vfs.Default, filepath.Join(dir, tables[0]), 4, 0.2, 0.6, 7)
	return dir, opts, n, now
}

// A damaged sstable block costs the keys it holds and nothing else: lookups
// of those keys return ErrCorrupt, every other key is served, a scan steps
// over the damage, a compaction that reads it fails without taking the
// process down, and Health names the file. (Pebble's default for damage is a
// fatal error, which panicked the process.)
func TestDamagedTableServesTheRest(t *testing.T) {
	ctx := context.Background()
	dir, opts, n, now := damagedStore(t)
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatalf("open with a damaged sstable: %v", err)
	}
	defer s.Close()
	served, corrupt := 0, 0
	for i := range n {
		r := ackProvider(i*5, now)
		got, err := s.Providers(ctx, r.Key, 0)
		switch {
		case errors.Is(err, store.ErrCorrupt):
			corrupt++
		case err != nil:
			t.Fatalf("Providers %d: %v", i, err)
		case len(got) != 1 || got[0].Provider != r.Provider:
			t.Fatalf("Providers %d: %d records and no error: a damaged record went missing silently", i, len(got))
		default:
			served++
		}
	}
	if corrupt == 0 || served < int(n/2) {
		t.Fatalf("served %d, ErrCorrupt %d of %d: want some damage and most served", served, corrupt, n)
	}
	h := s.Health()
	if h.CorruptFiles != 1 || !h.Degraded() || h.CorruptReads < int64(corrupt) {
		t.Fatalf("health %+v after %d damaged reads", h, corrupt)
	}

	// A full scan: completes, skips the damage, and returns every record a
	// lookup served (bisection keeps the skipped range close to the damage).
	scanned, skipped, pages := 0, 0, 0
	var c store.Cursor
	for {
		page, err := s.Scan(ctx, store.ScanOptions{Kind: store.Providers, Limit: 500, After: c})
		if err != nil {
			t.Fatal(err)
		}
		skipped += page.Skipped
		scanned += page.Len()
		pages++
		if c = page.Next; c == nil {
			break
		}
	}
	if skipped == 0 || scanned > int(n) || scanned < served*99/100 {
		t.Fatalf("scan: %d records, %d skipped in %d pages; lookups served %d of %d", scanned, skipped, pages, served, n)
	}

	// Pebble's compaction of the damaged file fails; the store goes on.
	if err := pebblestore.CompactAll(s); err == nil {
		t.Fatal("a compaction through a damaged block succeeded")
	}
	// A new key outside the damaged blocks (a write must read its key's
	// providers, which fails inside them) is written and read back.
	var r store.ProviderRecord
	for j := int64(999999); ; j++ {
		r = ackProvider(j*5, now)
		if _, err := s.Providers(ctx, r.Key, 0); err == nil {
			break
		}
	}
	if err := s.AddProviders(ctx, r); err != nil {
		t.Fatalf("write after damage: %v", err)
	}
	if got, err := s.Providers(ctx, r.Key, 0); err != nil || len(got) != 1 {
		t.Fatalf("read back after damage: %v %v", got, err)
	}
}

// Damage in the middle of the newest write-ahead log is not silent: pebble
// replays the log up to it, and Open reports the writes after it as lost.
// A log that is only cut short is sound (the control).
func TestWALDamageIsReported(t *testing.T) {
	fs := vfs.NewCrashableMem()
	opts := pebblestore.Options{
		Options:      store.Options{Logger: slog.New(slog.DiscardHandler)},
		CacheSize:    1 << 20,
		MemTableSize: 8 << 20, // no flush: every write stays in the log
		FS:           fs,
	}
	s, err := pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	writeSequential(t, s, n)
	intact := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))})
	damaged := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	all := make([]int64, n)
	for i := range all {
		all[i] = int64(i)
	}

	opts.FS = intact
	s, err = pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatal(err)
	}
	if h := s.Health(); h.Degraded() || h.LostLogRecords != 0 {
		t.Fatalf("intact log: health %+v", h)
	}
	if missing := missingNumbered(t, s, all); len(missing) > 0 {
		t.Fatalf("intact log: %d records missing", len(missing))
	}
	s.Close()

	names, err := damaged.List("/store")
	if err != nil {
		t.Fatal(err)
	}
	var wal string
	for _, name := range names {
		if strings.HasSuffix(name, ".log") && name > wal {
			wal = name
		}
	}
	flipBytes(t, damaged, "/store/"+wal, 1, 0.4, 0.5, 3)
	opts.FS = damaged
	rep, err := pebblestore.Check(context.Background(), "/store", opts)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "write-ahead log") {
		t.Fatalf("check of a damaged log: %v %+v", err, rep)
	}
	s, err = pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatalf("open with a damaged log: %v", err)
	}
	defer s.Close()
	h := s.Health()
	missing := int64(len(missingNumbered(t, s, all)))
	if missing == 0 {
		t.Fatal("the flipped byte cost nothing: the test damaged nothing")
	}
	if !h.Degraded() || h.LostLogRecords <= 0 || !strings.Contains(strings.Join(h.Problems, "\n"), "write-ahead log") {
		t.Fatalf("damaged log, %d records missing: health %+v", missing, h)
	}
	// The count is of whole records after the damaged block: at most the
	// records missing, and short of them by at most about two 32 KiB blocks
	// of 100-byte commits.
	if h.LostLogRecords > missing || h.LostLogRecords < missing-700 {
		t.Fatalf("lost %d reported, %d missing", h.LostLogRecords, missing)
	}

	// Open kept a copy of the damaged log, from which Salvage recovers the
	// records the replay dropped.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = pebblestore.Check(context.Background(), "/store", opts)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "kept when the store was opened") {
		t.Fatalf("check after the replay: %v %+v", err, rep)
	}
	sr, err := pebblestore.Salvage(context.Background(), "/store", "/salvaged", opts)
	if err != nil {
		t.Fatal(err)
	}
	if sr.FromLog != h.LostLogRecords {
		t.Fatalf("salvage recovered %d records from the log, %d were reported lost", sr.FromLog, h.LostLogRecords)
	}
	s, err = pebblestore.Open("/salvaged", opts)
	if err != nil {
		t.Fatal(err)
	}
	still := int64(len(missingNumbered(t, s, all)))
	if still != missing-sr.FromLog {
		t.Fatalf("after salvage %d records missing, want %d", still, missing-sr.FromLog)
	}
}

// failingFS fails every write to a write-ahead log once fail is set, as a
// disk that went bad (or full, behind the store's back) would.
type failingFS struct {
	vfs.FS
	fail atomic.Bool
}

type failingFile struct {
	vfs.File
	fs *failingFS
}

func (f failingFile) Write(p []byte) (int, error) {
	if f.fs.fail.Load() {
		return 0, &os.PathError{Op: "write", Path: "log", Err: syscall.EIO}
	}
	return f.File.Write(p)
}

func (fs *failingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return failingFile{f, fs}, nil
}

func (fs *failingFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(name, f, err)
}

func (fs *failingFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.wrap(newname, f, err)
}

// A failed log write is fatal to pebble (its logger's Fatalf, which
// panicked the process). The store turns it into an error matching
// ErrUnavailable for that write and every later one, and goes on serving
// reads.
func TestLogWriteFailureStopsWritesNotReads(t *testing.T) {
	ctx := context.Background()
	fs := &failingFS{FS: vfs.NewMem()}
	opts := pebblestore.Options{
		Options:   store.Options{Logger: slog.New(slog.DiscardHandler)},
		CacheSize: 1 << 20,
		FS:        fs,
	}
	s, err := pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := ackProvider(0, now)
	if err := s.AddProviders(ctx, first); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	for i := int64(1); i <= 3; i++ {
		err := s.AddProviders(ctx, ackProvider(i, now))
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("write %d after the log failed: %v, want ErrUnavailable", i, err)
		}
	}
	if h := s.Health(); !h.Failed || !h.Degraded() {
		t.Fatalf("health %+v", h)
	}
	got, err := s.Providers(ctx, first.Key, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("read after the log failed: %v %v", got, err)
	}
	s.Close()
}

// While the disk has less free space than the reserve plus what a flush of
// the log needs, writes that add records get ErrNoSpace, reads and
// deletions go on, and writes are taken again once space is freed, without
// reopening.
func TestNoSpaceRefusesWritesUntilFreed(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	const reserve = 1 << 20
	setFree := func(b uint64) {
		mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: b, TotalBytes: 1 << 30, UsedBytes: 1<<30 - b})
	}
	setFree(reserve + 200<<10)
	opts := pebblestore.Options{
		Options:      store.Options{Logger: slog.New(slog.DiscardHandler)},
		CacheSize:    1 << 20,
		MemTableSize: 8 << 20,
		MinFreeSpace: reserve,
		FS:           mem,
	}
	s, err := pebblestore.Open("/store", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pebblestore.SetSpaceRecheck(s, 0)
	now := time.Now()
	var written []int64
	var refused error
	for i := int64(0); i < 20000 && refused == nil; i++ {
		switch err := s.AddProviders(ctx, ackProvider(i*5, now)); {
		case errors.Is(err, store.ErrNoSpace):
			refused = err
		case err != nil:
			t.Fatal(err)
		default:
			written = append(written, i*5)
		}
	}
	if refused == nil {
		t.Fatal("200 KiB over the reserve, 20000 writes were taken")
	}
	if len(written) == 0 {
		t.Fatal("no write was taken")
	}
	if h := s.Health(); !h.NoSpace || !h.Degraded() {
		t.Fatalf("health while refusing: %+v", h)
	}
	if missing := missingNumbered(t, s, written); len(missing) > 0 {
		t.Fatalf("%d acknowledged records unreadable while the disk is full", len(missing))
	}
	r := ackProvider(written[0], now)
	if err := s.RemoveProvider(ctx, r.Key, r.Provider); err != nil {
		t.Fatalf("a deletion while the disk is full: %v", err)
	}
	setFree(1 << 30)
	if err := s.AddProviders(ctx, ackProvider(100000, now)); err != nil {
		t.Fatalf("write after space was freed: %v", err)
	}
	if h := s.Health(); h.NoSpace || h.Degraded() {
		t.Fatalf("health after space was freed: %+v", h)
	}
}

// A store whose MANIFEST is damaged does not open, and says why.
func TestDamagedManifestFailsOpen(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(store.Options{Logger: slog.New(slog.DiscardHandler)})
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	writeSequential(t, s, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m := filesIn(t, dir, "")
	var manifest string
	for _, name := range m {
		if strings.HasPrefix(name, "MANIFEST-") {
			manifest = name
		}
	}
	flipBytes(t, vfs.Default, filepath.Join(dir, manifest), 8, 0, 1, 5)
	rep, err := pebblestore.Check(context.Background(), dir, opts)
	if err != nil || rep.OK() || !strings.Contains(rep.Problems[0], "does not open") {
		t.Fatalf("check of a damaged MANIFEST: %v %+v", err, rep)
	}
	if s, err := pebblestore.Open(dir, opts); err == nil {
		s.Close()
		t.Fatal("opened with a damaged MANIFEST")
	} else if !strings.Contains(err.Error(), "manifest") && !strings.Contains(err.Error(), "MANIFEST") {
		t.Fatalf("open error does not name the MANIFEST: %v", err)
	}

	// Salvage reads the sstables and logs without the MANIFEST.
	dst := filepath.Join(t.TempDir(), "salvaged")
	sr, err := pebblestore.Salvage(context.Background(), dir, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !sr.FromFiles || sr.ProviderRecords != 80 || sr.ValueRecords != 20 {
		t.Fatalf("salvage without the MANIFEST: %+v", sr)
	}
	s, err = pebblestore.Open(dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all := make([]int64, 100)
	for i := range all {
		all[i] = int64(i)
	}
	if missing := missingNumbered(t, s, all); len(missing) > 0 {
		t.Fatalf("salvaged store misses %d records", len(missing))
	}
}

// Damage does not stop expiry: Expire steps over what it cannot read and
// removes every other due record.
func TestExpireStepsOverDamage(t *testing.T) {
	ctx := context.Background()
	dir, opts, n, now := damagedStore(t)
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readable := 0
	for i := range n {
		if got, err := s.Providers(ctx, ackProvider(i*5, now).Key, 0); err == nil && len(got) == 1 {
			readable++
		}
	}
	removed, err := s.Expire(ctx, now.Add(48*time.Hour), 0)
	if err != nil {
		t.Fatalf("expire over a damaged store: %d removed, %v", removed, err)
	}
	if removed < readable*99/100 || removed > int(n) {
		t.Fatalf("expire removed %d; %d of %d records were readable", removed, readable, n)
	}
}
