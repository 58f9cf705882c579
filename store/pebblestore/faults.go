package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/big"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kadstore/kadstore/store"
)

// Faults.
//
// Nothing pebble finds on disk, and no I/O error it meets, takes the
// process down:
//
//   - Damaged files. Pebble verifies a checksum on every block it reads and
//     reports a mismatch to the DataCorruption event, which the store turns
//     into a log line (once per file) and a count, instead of pebble's
//     default of a fatal error. The read gets an error, which the store
//     returns as store.ErrCorrupt: Providers and GetValue of a key in a
//     damaged block fail, Scan steps over the damaged key range (faults.go,
//     skipDamage) and counts it in Page.Skipped, and every other key is
//     served. A compaction that meets a damaged block fails; pebble then
//     leaves the files involved alone for five minutes before it tries
//     again (its "problem spans"), and the failure is logged. Health lists
//     the damaged files until the store is reopened; `kadstore check`
//     finds them all and `kadstore check --repair` copies what can be read.
//   - Fatal errors. Pebble calls its logger's Fatalf where it cannot go on
//     (a log write that failed, a MANIFEST that cannot be written). The
//     store's logger marks the store failed, so that every later write
//     returns store.ErrUnavailable, and then stops only the goroutine that
//     called it: a call of the store's own gets a panic that the call
//     recovers and returns as the error; one of pebble's background
//     goroutines exits (runtime.Goexit). Reads go on being served from
//     what pebble holds; the store must be reopened to take writes again.
//   - A full disk. Writes are refused with store.ErrNoSpace before the disk
//     is full (space.go), so pebble does not meet ENOSPC in the first
//     place, and taken again once space is freed.
//   - Damage in the write-ahead log. Pebble replays the newest log up to its
//     first unreadable record and takes the rest for an unfinished write.
//     Open reads the log first and says how many writes it holds after such
//     a point (wal.go): Health and the log report them as lost.

// faults is the store's record of what went wrong. It exists before pebble
// opens, because pebble's event listener and logger report into it.
type faults struct {
	log *slog.Logger

	mu sync.Mutex
	// files are the damaged files reported, in the order met, and ranges
	// the key range of each (inclusive; nil when pebble gave none).
	files  []string
	ranges [][2][]byte
	// nDamaged is len(files), read without the lock.
	nDamaged atomic.Int32
	// failed holds the fatal error that stopped writes; nil while healthy.
	// Every write reads it, so it is not under mu.
	failed atomic.Pointer[error]
	// wal describes damage found in the write-ahead log at Open.
	wal string

	corruptReads atomic.Int64
	lostLog      atomic.Int64
	noSpace      atomic.Bool
	// noSpaceWhy is the last reason writes were refused for space.
	noSpaceWhy atomic.Pointer[string]
}

func newFaults(log *slog.Logger) *faults { return &faults{log: log} }

// eventListener returns the pebble events the store handles: damaged data
// and background errors. The rest keep pebble's defaults (none).
func (f *faults) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		DataCorruption:  f.dataCorruption,
		BackgroundError: f.backgroundError,
	}
}

// dataCorruption records a damaged file, logging it the first time.
func (f *faults) dataCorruption(info pebble.DataCorruptionInfo) {
	f.mu.Lock()
	known := slices.Contains(f.files, info.Path)
	if !known {
		f.files = append(f.files, info.Path)
		var r [2][]byte
		if len(info.Bounds.Start) > 0 || len(info.Bounds.End.Key) > 0 {
			r = [2][]byte{bytes.Clone(info.Bounds.Start), bytes.Clone(info.Bounds.End.Key)}
		}
		f.ranges = append(f.ranges, r)
		f.nDamaged.Store(int32(len(f.files)))
	}
	f.mu.Unlock()
	if !known {
		f.log.Error("pebblestore: damaged file: reads of the keys it holds fail with store.ErrCorrupt, the other keys are served; run kadstore check",
			"file", info.Path, "error", firstLine(info.Details))
	}
}

// inDamaged reports whether key lies in the key range of a damaged file
// (or any file was reported damaged without one).
func (f *faults) inDamaged(key []byte) bool {
	if f.nDamaged.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.ranges {
		if r[0] == nil && r[1] == nil {
			return true
		}
		if bytes.Compare(key, r[0]) >= 0 && (len(r[1]) == 0 || bytes.Compare(key, r[1]) <= 0) {
			return true
		}
	}
	return false
}

// backgroundError logs an error of a flush or compaction. Pebble retries
// both later.
func (f *faults) backgroundError(err error) {
	if pebble.IsCorruptionError(err) {
		// Reported once per file by dataCorruption; a compaction that
		// meets the file again every few minutes is not news.
		f.log.Debug("pebblestore: background job met damaged data", "error", firstLine(err))
		return
	}
	f.log.Error("pebblestore: background job failed (pebble retries it)", "error", firstLine(err))
}

// fail marks the store failed: writes are refused from now on.
func (f *faults) fail(err error) {
	f.failed.CompareAndSwap(nil, &err)
}

// failure returns the error that stopped writes, or nil.
func (f *faults) failure() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// checkWritable returns the error a write gets on a failed store.
func (f *faults) checkWritable() error {
	if err := f.failure(); err != nil {
		return fmt.Errorf("%w: pebblestore stopped taking writes after a fatal error (reopen the store): %w", store.ErrUnavailable, err)
	}
	return nil
}

// corruptRead counts a read that met damage and returns its error as
// store.ErrCorrupt.
func (f *faults) corruptRead(what string, err error) error {
	f.corruptReads.Add(1)
	return fmt.Errorf("%w: %s: %s", store.ErrCorrupt, what, firstLine(err))
}

// firstLine is the first line of err's message: pebble's corruption errors
// carry a second, "<corruption detail carrier>", and their %+v a stack.
func firstLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// health reports the faults, for Store.Health.
func (f *faults) health() store.Health {
	var h store.Health
	f.mu.Lock()
	h.CorruptFiles = len(f.files)
	for _, p := range f.files {
		h.Problems = append(h.Problems, "damaged file "+p)
	}
	if f.wal != "" {
		h.Problems = append(h.Problems, f.wal)
	}
	f.mu.Unlock()
	if err := f.failure(); err != nil {
		h.Failed = true
		h.Problems = append(h.Problems, "writes stopped after a fatal error: "+err.Error())
	}
	h.CorruptReads = f.corruptReads.Load()
	if h.CorruptReads > 0 && h.CorruptFiles == 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("%d reads met damaged data", h.CorruptReads))
	}
	h.LostLogRecords = f.lostLog.Load()
	if f.noSpace.Load() {
		h.NoSpace = true
		why := "writes refused: not enough free disk space"
		if p := f.noSpaceWhy.Load(); p != nil {
			why = *p
		}
		h.Problems = append(h.Problems, why)
	}
	return h
}

// Health reports the damage the store has met since Open, whether it
// refuses writes for want of disk space, and whether it stopped taking
// writes after a fatal error. It never blocks on I/O.
func (s *Store) Health() store.Health { return s.faults.health() }

var _ store.HealthReporter = (*Store)(nil)

// fatalPanic is the panic pebbleLogger.Fatalf raises in a call of the store,
// which the call recovers (recoverFatal).
type fatalPanic struct{ err error }

// ownFrames is the prefix of this package's function names in a stack
// trace.
var ownFrames = func() string {
	name := runtime.FuncForPC(reflect.ValueOf(Open).Pointer()).Name()
	return strings.TrimSuffix(name, "Open")
}()

// inStoreCall reports whether the calling goroutine runs a call of this
// package, which recovers a fatalPanic, rather than one of pebble's own.
func inStoreCall() bool {
	buf := make([]byte, 64<<10)
	buf = buf[:runtime.Stack(buf, false)]
	return strings.Contains(string(buf), ownFrames)
}

// recoverFatal turns a panic in pebble under a call of the store into the
// call's error. A fatal error of pebble (fatalPanic) has already failed the
// store; any other panic there (pebble is not meant to panic on damaged
// data, but a library that does must not take the node down) is returned
// as damage for a read, and fails the store for a write, since pebble's
// state is then unknown. Use it as defer s.recoverFatal(&err, write).
func (s *Store) recoverFatal(err *error, write bool) {
	r := recover()
	if r == nil {
		return
	}
	var e error
	switch v := r.(type) {
	case fatalPanic:
		*err = fmt.Errorf("%w: %w", store.ErrUnavailable, v.err)
		return
	case error:
		e = v
	default:
		e = fmt.Errorf("%v", v)
	}
	buf := make([]byte, 16<<10)
	buf = buf[:runtime.Stack(buf, false)]
	s.log.Error("pebblestore: panic in pebble recovered", "panic", e, "stack", string(buf))
	if write {
		s.faults.fail(fmt.Errorf("panic: %w", e))
		*err = fmt.Errorf("%w: panic in pebble: %w", store.ErrUnavailable, e)
		return
	}
	*err = s.faults.corruptRead("panic in pebble", e)
}

// readErr returns an error pebble gave a read: damage becomes
// store.ErrCorrupt (counted), anything else is wrapped as it is.
func (s *Store) readErr(what string, err error) error {
	if pebble.IsCorruptionError(err) {
		return s.faults.corruptRead(what, err)
	}
	return fmt.Errorf("pebblestore: %s: %w", what, err)
}

// writeErr returns an error pebble gave a write. Pebble cannot go on
// writing after its log failed, so a write that fails for want of space
// (another program filled the disk faster than the store's check saw) or
// an I/O error fails the store.
func (s *Store) writeErr(err error) error {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) {
		s.faults.fail(err)
		return fmt.Errorf("%w: pebblestore: %w", store.ErrUnavailable, err)
	}
	if pebble.IsCorruptionError(err) {
		return s.faults.corruptRead("write", err)
	}
	return fmt.Errorf("pebblestore: commit: %w", err)
}

// skipDamage seeks it to the first key after from that it reads without
// damage, before upper, and reports whether there is one, trying the keys
// of skipTargets in turn.
func skipDamage(it *pebble.Iterator, from, upper []byte) bool {
	for key := range skipTargets(from) {
		if bytes.Compare(key, upper) >= 0 {
			return false
		}
		if it.SeekGE(key) {
			if bytes.Compare(it.Key(), from) <= 0 {
				continue // clamped to the iterator's lower bound
			}
			if _, err := it.ValueAndErr(); err == nil {
				return true
			}
		} else if it.Error() == nil {
			return false
		}
	}
	return false
}

// skipTargets yields the keys after from at distances that double, reading
// the first bytes of keys that matter for order (skipUnit of the key's tag)
// as a number: from one unit in their last byte up to the top, where it
// ends.
func skipTargets(from []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		unit := skipUnit(from)
		padded := make([]byte, unit)
		copy(padded, from)
		base := new(big.Int).SetBytes(padded)
		for shift := 0; shift < unit*8; shift++ {
			next := new(big.Int).Add(base, new(big.Int).Lsh(big.NewInt(1), uint(shift)))
			if next.BitLen() > unit*8 || !yield(next.FillBytes(make([]byte, unit))) {
				return
			}
		}
	}
}

// skipUnit is how many leading bytes of a key skipDamage steps through:
// tag and Kademlia key for records, tag, expiry, kind and key prefix for
// time-index entries, the whole key otherwise.
func skipUnit(key []byte) int {
	if len(key) == 0 {
		return 1 + kk
	}
	switch key[0] {
	case tagProv, tagValue:
		return 1 + kk
	case tagExpiry:
		return expiryHead + 4
	}
	return max(len(key), 1+kk)
}
