package pebblestore

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kadstore/kadstore/store"
)

// Free space.
//
// Pebble cannot go on after a write to its log fails, and it needs room to
// flush a memtable into an sstable before it can delete the log that holds
// it. So the store refuses writes that would add records (AddProviders,
// PutValue) with store.ErrNoSpace while the disk's free space is below
//
//	reserve + 1.125 × the bytes of the live write-ahead log
//	        (+ 1.1 × MemTableSize with Options.Sync)
//
// where reserve is Options.MinFreeSpace (default 1 % of the filesystem,
// at least 16 MiB and at most 1 GiB): the live log is what the next flush
// writes, the reserve is left for compactions and for the operator, and
// with Sync pebble preallocates each new log (1.1 memtables; without Sync
// the store turns preallocation off, durability.go).
// Deletions (RemoveProvider, DeleteValue, Expire) are still taken: they
// free space. Reads are served throughout. The free space is read again
// once the writes since the last reading may have used a quarter of the
// room left, and, while writes are refused, at most every 100 ms when a
// write asks, so writes are taken again without a restart once space is
// freed.

// Bounds of the default reserve.
const (
	minDefaultReserve = 16 << 20
	maxDefaultReserve = 1 << 30
)

// spaceRecheck is how often a refused write reads the free space again.
const spaceRecheck = 100 * time.Millisecond

// spaceGuard decides whether writes that add records are taken.
type spaceGuard struct {
	fs      vfs.FS
	dir     string
	reserve int64 // Options.MinFreeSpace; 0 for the default, < 0 for none
	f       *faults
	walSize func() int64
	// prealloc is what pebble preallocates for a new log (Sync only).
	prealloc int64

	// budget is the bytes that may be written before the next reading.
	budget atomic.Int64

	mu        sync.Mutex
	lastCheck time.Time
	recheck   time.Duration // spaceRecheck; tests shorten it
	off       bool          // the filesystem reports no usage: no check
}

func newSpaceGuard(fs vfs.FS, dir string, reserve, prealloc int64, f *faults, walSize func() int64) *spaceGuard {
	g := &spaceGuard{fs: fs, dir: dir, reserve: reserve, prealloc: prealloc, f: f, walSize: walSize, recheck: spaceRecheck}
	if reserve < 0 {
		g.off = true
		g.budget.Store(math.MaxInt64)
	}
	return g
}

// wrote counts bytes written to the log.
func (g *spaceGuard) wrote(n int) { g.budget.Add(-int64(n)) }

// check returns nil if a write that adds records may go ahead, and an
// error matching store.ErrNoSpace if not.
func (g *spaceGuard) check() error {
	if g.budget.Load() > 0 && !g.f.noSpace.Load() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.off || (g.budget.Load() > 0 && !g.f.noSpace.Load()) {
		return nil
	}
	if g.f.noSpace.Load() && time.Since(g.lastCheck) < g.recheck {
		return g.refusal()
	}
	g.lastCheck = time.Now()
	du, err := g.fs.GetDiskUsage(g.dir)
	if err != nil {
		// In-memory filesystems report none: nothing to guard.
		g.off = true
		g.budget.Store(math.MaxInt64)
		return nil
	}
	reserve := g.reserve
	if reserve == 0 {
		reserve = min(max(int64(du.TotalBytes)/100, minDefaultReserve), maxDefaultReserve)
	}
	wal := g.walSize()
	need := reserve + wal + wal/8 + g.prealloc
	room := int64(du.AvailBytes) - need
	if room <= 0 {
		why := fmt.Sprintf("writes refused: %d MiB free on the store's disk, below the %d MiB kept in reserve plus %d MiB to flush the write-ahead log",
			du.AvailBytes>>20, reserve>>20, (wal+wal/8+g.prealloc)>>20)
		g.f.noSpaceWhy.Store(&why)
		if !g.f.noSpace.Swap(true) {
			g.f.log.Warn("pebblestore: "+why+"; reads are served, and writes are taken again once space is freed", "dir", g.dir)
		}
		return g.refusal()
	}
	if g.f.noSpace.Swap(false) {
		g.f.log.Info("pebblestore: free disk space is back; writes are taken again", "dir", g.dir, "free_mib", du.AvailBytes>>20)
	}
	g.budget.Store(max(room/4, 1))
	return nil
}

func (g *spaceGuard) refusal() error {
	why := "not enough free disk space"
	if p := g.f.noSpaceWhy.Load(); p != nil {
		why = *p
	}
	return fmt.Errorf("%w: %s", store.ErrNoSpace, why)
}
