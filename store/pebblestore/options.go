package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// Default option values.
const (
	DefaultCacheSize    = 64 << 20
	DefaultMemTableSize = 32 << 20
)

// Options configure a Store. The zero value of each field means its default;
// EnsureDefaults fills them in. The defaults bound the store's memory to about
// CacheSize + 2×MemTableSize (under 150 MiB) plus a few MiB of pebble
// metadata, plus the key filter: 1.25 bytes a record (2.5 once it has grown,
// briefly 3.75 while it is rebuilt larger), at least 1.25 MiB; about
// 12.5 MiB after opening a store of 10 M records; plus the providers of the
// last 4 096 keys written (keyfilter.go), a few MiB at most. Nothing else is
// kept in memory per record. Block cache and memtables are C memory (with cgo): under glibc,
// run the program with MALLOC_ARENA_MAX=2 (the kadstore command applies the
// same cap at start-up), or freed cache memory stays scattered over glibc's
// per-thread arenas and RSS exceeds that bound by tens of MiB
// (docs/BENCHMARKS.md).
type Options struct {
	// Options are the settings every backend shares: Limits, the clock (Now)
	// and the Logger that reports corrupt records and pebble's own messages.
	store.Options

	// CacheSize is the size in bytes of pebble's block cache, which holds
	// uncompressed data, index and bloom filter blocks. Default 64 MiB. A
	// larger cache serves more lookups without reading the disk (or the OS
	// page cache); the filters of a 10 M-record store take about 25 MiB of it.
	CacheSize int64

	// MemTableSize is the size in bytes of one memtable, the in-memory buffer
	// of recent writes that is flushed to an sstable when full. Default
	// 32 MiB. Pebble keeps at most two (one filling, one flushing), so the
	// memtables take up to twice this much; larger memtables mean fewer,
	// larger flushes and less write amplification.
	MemTableSize int64

	// Sync makes every write survive power loss: each call returns only
	// after the write-ahead log holding its write has been fsynced, and the
	// calls that arrive while an fsync runs share the next one (group
	// commit), so concurrent writers share the disk's fsync rate.
	//
	// Default false: every call that returned nil survives the death of the
	// process (kill -9, a panic, the OOM killer), because its write is in
	// the operating system's page cache before the call returns; a machine
	// crash or power loss may lose the writes the kernel had not yet written
	// back (by default those of the last 30 to 35 s), and never damages the
	// store. The default leaves out the fsync, which caps the write rate at
	// the disk's fsync rate, because DHT records are soft state their
	// publishers refresh (providers every 22 h). See durability.go.
	Sync bool

	// MinFreeSpace is the free disk space, in bytes, the store keeps in
	// reserve: writes that add records return store.ErrNoSpace while the
	// disk has less than this plus what flushing the write-ahead log needs,
	// and are taken again once space is freed (space.go). Default 0 means
	// 1 % of the filesystem, at least 16 MiB and at most 1 GiB; a negative
	// value turns the check off.
	MinFreeSpace int64

	// FS is the filesystem the store lives on. Default the operating
	// system's (vfs.Default); tests give pebble's in-memory filesystems,
	// among them vfs.NewCrashableMem, which can drop unsynced writes.
	FS vfs.FS

	// IndexedPeers are the providers whose records are also indexed by peer,
	// so that a provider scan restricted to one of them (ScanOptions.Peer)
	// reads only that peer's records. Give it the node's own peer ID: the
	// reprovider walks the node's own records that way, in a store that
	// holds millions of records of other peers. A scan restricted to a peer
	// not listed reads the whole range and filters it by provider (without
	// decoding the others). Default none.
	//
	// The index costs a key (about 40 bytes on disk) and a write per indexed
	// record, which is why it is not kept for every provider. When a peer is
	// added to the list, Open builds its index in one pass over the provider
	// records; when one is removed, Open drops its index.
	IndexedPeers []peer.ID

	// IndexAllPeers indexes every provider's records by peer, as if every
	// provider were in IndexedPeers: for a store shared by several node
	// identities, or any use that scans many peers' records. Default false.
	IndexAllPeers bool

	// ReadOnly opens the store for reading only, for tools that inspect a
	// data directory: writes and Expire return ErrReadOnly, and nothing is
	// written to the directory. The directory lock is still taken, so a
	// read-only store cannot be opened while a node has the directory open.
	ReadOnly bool
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	o.Options.EnsureDefaults()
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
}

// pebbleOptions translates o (with defaults) into pebble's options.
func (o *Options) pebbleOptions(lock *pebble.Lock, f *faults) *pebble.Options {
	po := &pebble.Options{
		CacheSize:    o.CacheSize,
		MemTableSize: uint64(o.MemTableSize),
		Comparer:     comparer,
		// The newest format below FormatWALSyncChunks, whose log records
		// claim the offset fsynced so far: without Sync the store skips
		// the fsyncs (durability.go), and a power loss that wrote later
		// pages of the log but not earlier ones would then read as
		// corruption, not as a short log.
		FormatMajorVersion: pebble.FormatColumnarBlocks,
		ReadOnly:           o.ReadOnly,
		Lock:               lock,
		Logger:             pebbleLogger{o.Logger, f},
		EventListener:      f.eventListener(),
		FS:                 o.FS,
	}
	if !o.Sync {
		po.FS = walFS{o.FS}
	}
	// Bloom filters on every level, L0 included (pebble's default has none
	// there): 10 bits a key give about 1% false positives, so a lookup of a
	// missing key rarely reads a data block. They leave out the keys no
	// lookup asks for (filter.go).
	po.Filters = filterPolicies()
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = po.Filters[lookupFilterName]
	}
	// Snappy on every level, pebble's default, written out: the format
	// above (table format v5) takes no MinLZ, and pebble's mixed profiles
	// that name it fall back to Snappy anyway. Records are mostly random
	// bytes (keys, peer IDs, digests), so most blocks gain less than the
	// 12 % pebble wants and are stored uncompressed. Zstd on the last level
	// (sstable.ZstdCompression) took the disk at 1 M records from 1.32× to
	// 1.20× the raw record bytes, at a cost to lookups that reads of
	// compressed blocks bring; it was not measured on a quiet machine, so
	// it is not the default (docs/BENCHMARKS.md).
	for i := range po.Levels {
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.SnappyCompression }
	}
	// 8 KiB data blocks instead of 4: half the index entries, and Snappy
	// finds more to share in a block (a key's providers repeat its
	// multihash in their values), which keeps more blocks compressed; and
	// Expire, which reads the blocks that hold due records, reads half as
	// many. A base level of up to 128 MiB instead of 64: one level fewer
	// below it until the store passes about 10 M records, so a lookup
	// consults one set of filters and indexes fewer. At 1 M records:
	// disk 1.311× → 1.265× the raw record bytes, lookup-miss p99 19 → 4.5 µs,
	// expire 197 K → 317 K records/s (docs/BENCHMARKS.md).
	for i := range po.Levels {
		po.Levels[i].BlockSize = 8 << 10
	}
	po.LBaseMaxBytes = 128 << 20
	// Pebble moves the values of all but the first key of a prefix to value
	// blocks, assuming they are older MVCC versions. The providers of one
	// key are not versions: Providers reads them all, so keep them in place.
	po.Experimental.SpanPolicyFunc = func([]byte) (pebble.SpanPolicy, []byte, error) {
		return pebble.SpanPolicy{DisableValueSeparationBySuffix: true}, nil, nil
	}
	po.EnsureDefaults()
	return po
}

// pebbleLogger sends pebble's messages to the store's slog logger: pebble's
// routine reports at debug level, its errors at error level. Its Fatalf
// fails the store (faults.go).
type pebbleLogger struct {
	log *slog.Logger
	f   *faults
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf reports an error pebble cannot continue after. Pebble's own logger
// exits the process; a library must not. It marks the store failed, then
// stops the goroutine that called it: a call of the store recovers the
// panic and returns it as its error; one of pebble's background goroutines
// exits, leaving the process and the reads running.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	err := errors.New(fmt.Sprintf(format, args...))
	l.log.Error("pebblestore: fatal error in pebble; the store takes no more writes until it is reopened", "error", err, "component", "pebble")
	l.f.fail(err)
	if inStoreCall() {
		panic(fatalPanic{err})
	}
	runtime.Goexit()
}
