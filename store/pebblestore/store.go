package pebblestore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// Errors of this backend, besides the store package's.
var (
	// ErrLocked is returned by Open when another Store (in this process or
	// another) has the directory open. It wraps pebble's lock error.
	ErrLocked = errors.New("pebblestore: directory in use")
	// ErrReadOnly is returned by writes and Expire on a store opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("pebblestore: read-only store")
	// ErrIncompatible is returned by Open for a directory that holds a pebble
	// database of another layout or another program.
	ErrIncompatible = errors.New("pebblestore: incompatible database")
)

// Store is a record store in a pebble database. It is safe for concurrent
// use; see the package documentation for its layout and locking.
type Store struct {
	dir    string
	opts   Options
	limits store.Limits
	now    func() time.Time
	log    *slog.Logger
	db     *pebble.DB
	lock   *pebble.Lock

	// closeMu is held shared by every call for its duration and exclusively
	// by Close, so Close waits for calls in flight and later calls see closed.
	closeMu sync.RWMutex
	closed  bool

	// shards are the writers (shard.go).
	shards []*shard
	// Record counts, as of the last commits: the sums of the shards' parts.
	nProviders, nValues atomic.Int64
	// nRecords is the total the MaxRecords check reserves room in: the
	// records stored plus those being committed.
	nRecords atomic.Int64
	// provMu is held by a txn that reads per-provider counts, until its
	// batch is applied. provCache holds the counts of the providers written
	// lately, as committed (under provMu), so that a provider's next write
	// needs no read of its count.
	provMu    sync.Mutex
	provCache map[string]int64
	// txns holds txns for reuse (newTxn).
	txns sync.Pool
	// perProvider is set when per-provider counts are maintained
	// (Limits.MaxRecordsPerProvider > 0).
	perProvider bool
	// indexed holds the peers whose records have peer index entries;
	// indexAll says every provider's have. Both are fixed at Open.
	indexed  map[peer.ID]bool
	indexAll bool

	// addrs caches decoded addresses for reads.
	addrs *addrCache

	// expireVisited counts the time-index entries Expire read (for tests).
	expireVisited atomic.Int64

	// The key filter (keyfilter.go): filter is complete and in use,
	// filterNext is being built. Both are written with every shard held.
	filter, filterNext *keyFilter
	// growing is set while a goroutine replaces an overfull filter.
	growing atomic.Bool
	// filterSkips and recentHits count the reads the filter and recent
	// saved (for tests).
	filterSkips, recentHits atomic.Int64
	// bg runs the background work (filter builds); stop tells it to end.
	bg   sync.WaitGroup
	stop chan struct{}

	// faults records damage and failures (faults.go); space refuses
	// writes when the disk is nearly full (space.go).
	faults *faults
	space  *spaceGuard
}

var _ store.Store = (*Store)(nil)

// Open opens the store in dir, creating the directory and the database if
// they do not exist. It fails with ErrLocked if another Store has dir open,
// and with an error saying why for a database it cannot read (a damaged
// MANIFEST, OPTIONS file or older write-ahead log); it never panics. Damage
// in the newest write-ahead log does not stop it: the writes after the
// damage are lost, and the log and Health say how many.
func Open(dir string, opts Options) (_ *Store, err error) {
	opts.EnsureDefaults()
	for _, p := range opts.IndexedPeers {
		if err := store.CheckPeer(p); err != nil {
			return nil, fmt.Errorf("pebblestore: IndexedPeers: %w", err)
		}
	}
	if !opts.ReadOnly {
		if err := opts.FS.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("pebblestore: %w", err)
		}
	}
	lock, err := pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		// A path error is the lock file failing to open (a missing or
		// unwritable directory); anything else is the lock being held.
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			return nil, fmt.Errorf("pebblestore: %w", err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, dir, err)
	}
	f := newFaults(opts.Logger)
	var walDamaged *walDamage
	if !opts.ReadOnly {
		walDamaged, err = checkWAL(opts.FS, dir)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("pebblestore: reading the write-ahead log: %w", err)
		}
	}
	// Keep a copy of a damaged log before pebble's replay drops its tail.
	var kept string
	var keepErr error
	if walDamaged != nil {
		kept, keepErr = keepDamaged(opts.FS, walDamaged)
	}
	db, err := openPebble(dir, opts.pebbleOptions(lock, f))
	if err != nil {
		lock.Close()
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("pebblestore: %s: %w", dir, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	s := &Store{
		dir:       dir,
		opts:      opts,
		limits:    opts.Limits,
		now:       opts.Now,
		log:       opts.Logger,
		db:        db,
		lock:      lock,
		shards:    newShards(),
		provCache: make(map[string]int64),
		indexed:   make(map[peer.ID]bool),
		addrs:     newAddrCache(),
		stop:      make(chan struct{}),
		faults:    f,
	}
	var prealloc int64
	if opts.Sync {
		prealloc = opts.MemTableSize + opts.MemTableSize/10
	}
	s.space = newSpaceGuard(opts.FS, dir, opts.MinFreeSpace, prealloc, f, func() int64 { return int64(db.Metrics().WAL.Size) })
	if walDamaged != nil {
		f.wal = walDamaged.String()
		f.lostLog.Store(walDamaged.lostWrites)
		if keepErr != nil {
			s.log.Error("pebblestore: "+walDamaged.String()+"; the store opened without them, and keeping a copy of the log failed", "dir", dir, "error", keepErr)
		} else {
			s.log.Error("pebblestore: "+walDamaged.String()+"; the store opened without them; `kadstore check --repair` recovers them from the copy kept", "dir", dir, "copy", kept)
		}
	}
	defer s.recoverFatal(&err, true)
	if err := s.load(); err != nil {
		db.Close()
		lock.Close()
		return nil, err
	}
	if !opts.Sync && !opts.ReadOnly && db.FormatMajorVersion() >= pebble.FormatWALSyncChunks {
		// See durability.go: such a log claims fsyncs that did not happen.
		s.log.Warn("pebblestore: this store's format records fsynced log offsets (it was created by an earlier kadstore, or with a newer format): without Sync, a power loss can leave its newest log unreadable; open it with Sync, or export and import it into a new store",
			"dir", dir, "format", db.FormatMajorVersion())
	}
	return s, nil
}

// openPebble opens pebble, returning a fatal error it meets (a MANIFEST it
// cannot write) as an error.
func openPebble(dir string, po *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = fp.err
		}
	}()
	return pebble.Open(dir, po)
}

// load checks the layout version and reads the counters, and builds or drops
// the per-provider counts when MaxRecordsPerProvider was switched on or off.
func (s *Store) load() error {
	v, err := s.get(metaVersion)
	switch {
	case err != nil:
		return err
	case v == nil:
		empty, err := s.isEmpty()
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: no layout version", ErrIncompatible)
		}
		if !s.opts.ReadOnly {
			if err := s.db.Set(metaVersion, []byte{layoutVersion}, pebble.Sync); err != nil {
				return fmt.Errorf("pebblestore: %w", err)
			}
		}
	case len(v) == 1 && v[0] == 1:
		if !s.opts.ReadOnly {
			if err := s.migrateV1(); err != nil {
				return err
			}
		}
		// A read-only store reads version 1 as it is: only Expire, which
		// it refuses, reads the time index.
	case len(v) != 1 || v[0] != layoutVersion:
		return fmt.Errorf("%w: layout version %x, want %d", ErrIncompatible, v, layoutVersion)
	}

	if err := s.loadCounts(); err != nil {
		return err
	}

	b := s.db.NewBatch()
	defer func() { b.Close() }()
	build, buildAll, err := s.loadIndexes(b)
	if err != nil || s.opts.ReadOnly {
		return err
	}
	maintained, err := s.get(metaPerProvider)
	if err != nil {
		return err
	}
	countsWanted := s.limits.MaxRecordsPerProvider > 0
	if !countsWanted && maintained != nil {
		// The counts would go stale while off: drop them, and rebuild them
		// if the limit is switched on again.
		b.DeleteRange([]byte{tagCount}, tagEnd(tagCount), nil)
		b.Delete(metaPerProvider, nil)
	}
	if !b.Empty() {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("pebblestore: %w", err)
		}
	}
	if len(build) > 0 || buildAll || countsWanted && maintained == nil {
		if err := s.rebuild(build, buildAll, countsWanted && maintained == nil); err != nil {
			return err
		}
	}
	s.perProvider = countsWanted
	return nil
}

// loadCounts reads the record counts: the sum of the parts under m|n and
// m|n|shard (a store of version 1 has only m|n). A writable store then
// keeps the sum in the first shard's part and drops the others.
func (s *Store) loadCounts() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: metaCounts, UpperBound: prefixEnd(metaCounts)})
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	var prov, val int64
	var keys [][]byte
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if len(v) != 16 || len(it.Key()) > len(metaCounts)+1 {
			return fmt.Errorf("%w: record counts %x of %d bytes", store.ErrCorrupt, it.Key(), len(v))
		}
		prov += int64(binary.BigEndian.Uint64(v))
		val += int64(binary.BigEndian.Uint64(v[8:]))
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	s.nProviders.Store(prov)
	s.nValues.Store(val)
	s.nRecords.Store(prov + val)
	s.shards[0].nProv, s.shards[0].nVal = prov, val
	if s.opts.ReadOnly || len(keys) == 0 || len(keys) == 1 && bytes.Equal(keys[0], countKeyOf(0)) {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		b.Delete(k, nil)
	}
	b.Set(countKeyOf(0), encodeCounts(prov, val), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	return nil
}

// get returns a copy of the value of key, or nil if it is absent.
func (s *Store) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	defer closer.Close()
	return append([]byte{}, v...), nil
}

func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	return !it.First(), it.Error()
}

// acquire starts a call: it fails if ctx is done or the store closed, and
// otherwise holds closeMu shared until release.
func (s *Store) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

func (s *Store) release() { s.closeMu.RUnlock() }

// acquireWrite is acquire for calls that write. A call that adds records
// (grows) is refused while the disk is nearly full (space.go); every write
// is refused once the store failed (faults.go).
func (s *Store) acquireWrite(ctx context.Context, grows bool) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	err := s.faults.checkWritable()
	switch {
	case s.opts.ReadOnly:
		err = ErrReadOnly
	case err == nil && grows:
		err = s.space.check()
	}
	if err != nil {
		s.release()
	}
	return err
}

// Stats returns the record counts, kept up to date by every write, and the
// disk space pebble reports.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	if err := s.acquire(ctx); err != nil {
		return store.Stats{}, err
	}
	defer s.release()
	return store.Stats{
		ProviderRecords: s.nProviders.Load(),
		ValueRecords:    s.nValues.Load(),
		DiskBytes:       int64(s.db.Metrics().DiskSpaceUsage()),
	}, nil
}

// Metrics returns pebble's metrics (LSM shape, cache hit rates, compaction
// and disk figures), for tools and benchmarks. It returns nil after Close.
func (s *Store) Metrics() *pebble.Metrics {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil
	}
	return s.db.Metrics()
}

// Close waits for calls in flight, then closes the database and releases the
// directory lock. Later calls return ErrClosed; Close itself is idempotent.
//
// Close flushes the memtable first, so that the next Open does not replay the
// write-ahead log and answers at once. It then removes the write-ahead logs
// pebble keeps for reuse (up to three files the size of a memtable): after
// the flush only the newest log can hold data, so a closed store's
// directory holds its records and little else.
func (s *Store) Close() (err error) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.stop)
	s.bg.Wait()
	defer s.recoverFatal(&err, true)
	var errs []error
	// A failed store (faults.go) cannot flush: its log writer stopped.
	if !s.opts.ReadOnly && s.faults.failure() == nil {
		if err := s.db.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, err)
	}
	if !s.opts.ReadOnly && len(errs) == 0 {
		if err := removeRecycledLogs(s.opts.FS, s.dir); err != nil {
			s.log.Warn("pebblestore: removing recycled write-ahead logs", "error", err)
		}
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pebblestore: close: %w", err)
	}
	return nil
}

// removeRecycledLogs removes every write-ahead log in dir but the newest.
// It runs after a flush and a close that succeeded: pebble then needs only
// the newest log (its memtable was flushed into sstables before the switch
// to it), and keeps the older ones only to reuse their files.
func removeRecycledLogs(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	type log struct {
		num  uint64
		name string
	}
	var logs []log
	for _, name := range names {
		num, ok := strings.CutSuffix(name, ".log")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(num, 10, 64); err == nil {
			logs = append(logs, log{n, name})
		}
	}
	if len(logs) < 2 {
		return nil
	}
	newest := slices.MaxFunc(logs, func(a, b log) int { return cmp.Compare(a.num, b.num) })
	var errs []error
	for _, l := range logs {
		if l != newest {
			errs = append(errs, fs.Remove(fs.PathJoin(dir, l.name)))
		}
	}
	return errors.Join(errs...)
}
