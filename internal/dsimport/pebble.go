package dsimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleDB reads a go-ds-pebble store, whose keys are the datastore key
// strings, like LevelDB's.
type pebbleDB struct {
	db   *pebble.DB
	lock *pebble.Lock
}

// openPebble opens dir read-only. Pebble's ReadOnly mode replays the WAL into
// memory and writes nothing, but its default file system truncates LOCK to
// take an exclusive lock; readOnlyFS instead takes a shared lock without
// touching the file, and refuses every write, so that an oversight in pebble
// fails the import rather than changes the store.
func openPebble(dir string, log *slog.Logger) (*pebbleDB, error) {
	if err := checkPebbleFormat(dir); err != nil {
		return nil, err
	}
	fs := readOnlyFS{vfs.Default}
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return nil, err
	}
	db, err := pebble.Open(dir, &pebble.Options{
		FS:       fs,
		Lock:     lock,
		ReadOnly: true,
		Logger:   pebbleLogger{log},
	})
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("dsimport: opening Pebble %s: %w", dir, err)
	}
	return &pebbleDB{db: db, lock: lock}, nil
}

// checkPebbleFormat reads the store's format major version from its marker
// file (marker.format-version.<iteration>.<version>; none at all, with a
// CURRENT file, means version 1) and rejects a version this pebble cannot
// read with an error that says so, where pebble's own error is opaque.
func checkPebbleFormat(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("dsimport: %w", err)
	}
	const marker = "marker.format-version."
	version, iteration, current := uint64(0), uint64(0), false
	for _, e := range entries {
		name := e.Name()
		if name == "CURRENT" {
			current = true
		}
		rest, ok := strings.CutPrefix(name, marker)
		if !ok {
			continue
		}
		iter, vers, ok := strings.Cut(rest, ".")
		i, err1 := strconv.ParseUint(iter, 10, 64)
		v, err2 := strconv.ParseUint(vers, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			continue // not a marker file; let pebble judge
		}
		// After a crash, obsolete markers may remain: the highest iteration
		// is the current one.
		if i >= iteration {
			version, iteration = v, i
		}
	}
	if version == 0 && current {
		version = 1
	}
	switch {
	case version == 0:
		return nil
	case version < uint64(pebble.FormatMinSupported):
		return fmt.Errorf("%w: %s is a Pebble store in format major version %d, which pebble v2 cannot read (it reads %d to %d); "+
			"upgrade it first by opening it with pebble v1 at a newer FormatMajorVersion (Kubo's pebbleds formatMajorVersion option)",
			ErrUnsupportedFormat, dir, version, pebble.FormatMinSupported, pebble.FormatNewest)
	case version > uint64(pebble.FormatNewest):
		return fmt.Errorf("%w: %s is a Pebble store in format major version %d, newer than this build reads (%d to %d)",
			ErrUnsupportedFormat, dir, version, pebble.FormatMinSupported, pebble.FormatNewest)
	}
	return nil
}

func (p *pebbleDB) scan(ctx context.Context, prefix []byte, fn func(ctx context.Context, k, v []byte) error) error {
	it, err := p.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("dsimport: reading Pebble: %w", err)
	}
	defer func() { _ = it.Close() }()
	for n, ok := 0, it.First(); ok; n, ok = n+1, it.Next() {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("dsimport: reading Pebble: %w", err)
		}
		if err := fn(ctx, it.Key(), v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("dsimport: reading Pebble: %w", err)
	}
	return nil
}

func (p *pebbleDB) close() error {
	err := p.db.Close()
	return errors.Join(err, p.lock.Close())
}

// prefixEnd returns the first key after every key with the prefix, or nil
// when there is none.
func prefixEnd(prefix []byte) []byte {
	end := []byte(string(prefix))
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// errReadOnlyFS is returned by every write readOnlyFS refuses.
var errReadOnlyFS = errors.New("dsimport: write refused: the datastore is opened read-only")

// readOnlyFS is a pebble file system that reads through to the real one,
// takes shared locks, and refuses every write.
type readOnlyFS struct{ vfs.FS }

func (readOnlyFS) Create(string, vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, errReadOnlyFS
}
func (readOnlyFS) Link(string, string) error { return errReadOnlyFS }
func (readOnlyFS) OpenReadWrite(string, vfs.DiskWriteCategory, ...vfs.OpenOption) (vfs.File, error) {
	return nil, errReadOnlyFS
}
func (readOnlyFS) Remove(string) error         { return errReadOnlyFS }
func (readOnlyFS) RemoveAll(string) error      { return errReadOnlyFS }
func (readOnlyFS) Rename(string, string) error { return errReadOnlyFS }
func (readOnlyFS) ReuseForWrite(string, string, vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, errReadOnlyFS
}
func (readOnlyFS) MkdirAll(string, os.FileMode) error { return errReadOnlyFS }

// Unwrap hides the real file system, so nothing writes around the wrapper.
func (readOnlyFS) Unwrap() vfs.FS { return nil }

// Lock takes a shared lock on the existing LOCK file (see sharedLock). A
// store without a LOCK file is not held by anyone.
func (fs readOnlyFS) Lock(name string) (io.Closer, error) {
	c, err := sharedLock(name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return io.NopCloser(nil), nil
	case errors.Is(err, errLockConflict):
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	return c, err
}

// pebbleLogger sends pebble's messages to slog: its routine reports at debug
// level, its errors at warning level.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf reports an error pebble cannot continue after. Pebble's own logger
// exits the process; a library must not, so it panics instead.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "component", "pebble", "fatal", true)
	panic("dsimport: pebble: " + msg)
}
