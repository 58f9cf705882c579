package dsimport

import (
	"context"
	"fmt"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// levelDB reads a go-ds-leveldb store. go-ds-leveldb stores each datastore key
// as its string bytes, so the raw LevelDB keys are the datastore keys.
type levelDB struct{ db *leveldb.DB }

// openLevelDB opens dir read-only. goleveldb's read-only mode takes a shared
// flock on LOCK (so it fails against the exclusive lock of a running node),
// writes no LOG, replays the journal into memory only, and removes no
// obsolete files. The one change it can make is to create an empty LOCK file
// in a directory that lacks one, which a store never does.
func openLevelDB(dir string) (*levelDB, error) {
	db, err := leveldb.OpenFile(dir, &opt.Options{ReadOnly: true, ErrorIfMissing: true})
	if err != nil {
		if isLockConflict(err) {
			return nil, fmt.Errorf("%w: %s: %v", ErrLocked, dir, err)
		}
		return nil, fmt.Errorf("dsimport: opening LevelDB %s: %w", dir, err)
	}
	return &levelDB{db: db}, nil
}

func (l *levelDB) scan(ctx context.Context, prefix []byte, fn func(ctx context.Context, k, v []byte) error) error {
	// DontFillCache: one pass over the range gains nothing from caching it.
	it := l.db.NewIterator(util.BytesPrefix(prefix), &opt.ReadOptions{DontFillCache: true})
	defer it.Release()
	for n := 0; it.Next(); n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := fn(ctx, it.Key(), it.Value()); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("dsimport: reading LevelDB: %w", err)
	}
	return nil
}

func (l *levelDB) close() error { return l.db.Close() }
