package pebblestore

import (
	"errors"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Durability.
//
// Every commit asks pebble for a synced write (pebble.Sync). That is what
// makes pebble's log writer hand the commit's bytes to the operating system
// before the commit returns: with pebble.NoSync it keeps the last, partial
// 32 KiB block of the write-ahead log in process memory until the block
// fills, so a process that dies loses the writes of that block although
// they were acknowledged.
//
// Without Options.Sync the store then elides the fsync itself: walFS wraps
// the directory's filesystem, and the write-ahead log files it creates
// ignore Sync, SyncData and SyncTo. A commit therefore costs one write(2)
// into the page cache, shared by the calls its group commit gathered, and a
// write that returned survives the death of the process (kill -9, a panic,
// the OOM killer), because the kernel holds the bytes; it does not survive
// a machine crash or power loss before the kernel writes them back (by
// default within about 30 s, vm.dirty_expire_centisecs). A log file is
// fsynced once, when pebble closes it after switching to the next one, so
// that only the newest log can be short after a power loss: pebble reads a
// short newest log up to its last complete record, while a short older one
// would stop Open. A power loss may also write back later pages of the
// newest log and not earlier ones; pebble then stops at the first missing
// page, unless the log's records claim that the missing part had been
// fsynced, which they do from pebble's format FormatWALSyncChunks on: the
// store is therefore created at the format just below it (options.go), and
// Open warns about a store at a later format when Sync is off. Sstables,
// the MANIFEST and directories keep their real fsyncs, so a power loss
// never damages the store, it loses at most the last writes
// (TestPowerLossWithPartialWritebackOpens).
//
// With Options.Sync the filesystem is used as it is: every commit waits for
// the fsync of the log, which pebble's commit pipeline shares among the
// commits that arrive while the previous fsync runs.

// walFS is a vfs.FS whose write-ahead log files do not fsync, except when
// closed.
type walFS struct{ vfs.FS }

// isWAL reports whether a file name is a pebble write-ahead log.
func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func wrapWAL(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !isWAL(name) {
		return f, err
	}
	return walFile{f}, nil
}

func (fs walFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return wrapWAL(name, f, err)
}

func (fs walFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return wrapWAL(newname, f, err)
}

func (fs walFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, cat, opts...)
	return wrapWAL(name, f, err)
}

func (fs walFS) Unwrap() vfs.FS { return fs.FS }

// walFile is a write-ahead log file whose syncs only reach the page cache:
// pebble writes the buffered log before it asks for the sync, which is all a
// process crash needs. It does not preallocate either: pebble reserves 110 %
// of a memtable for each new log up front, which saves an fsync metadata
// update and costs that much free disk space from the log's first write on
// (space.go), and a failed preallocation would fail the write.
type walFile struct{ vfs.File }

func (walFile) Sync() error                       { return nil }
func (walFile) SyncData() error                   { return nil }
func (walFile) SyncTo(int64) (bool, error)        { return false, nil }
func (walFile) Preallocate(off, size int64) error { return nil }
func (f walFile) Close() error                    { return errors.Join(f.File.Sync(), f.File.Close()) }
