package pgstore

import (
	"context"
	"time"

	"github.com/kadstore/kadstore/store"
)

// Expire removes up to limit records (provider records first, then values)
// whose expiry is at or before now or more than 2×MaxTTL after now. Each
// statement deletes at most Options.ExpireBatch rows found through the
// expires index, so the cost grows with what is removed, and each is its own
// transaction, so a large Expire holds no long transaction and a cancelled
// context stops it between statements; the count returned is what was
// removed until then.
//
// Several nodes may expire one shared database at once: rows another node
// is deleting are skipped, not waited for, so they neither deadlock nor count
// a record twice. A statement that lost its connection after committing is
// not counted in the result, though its records are gone (and record_counts
// is right).
func (s *Store) Expire(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := s.start(ctx); err != nil {
		return 0, err
	}
	now, far := s.bounds(now)
	total := 0
	for _, t := range []struct {
		sql  string
		kind store.Kind
	}{{s.sql.expireProvider, store.Providers}, {s.sql.expireValues, store.Values}} {
		for {
			n := s.opts.ExpireBatch
			if limit > 0 {
				n = min(n, limit-total)
			}
			if n <= 0 {
				return total, nil
			}
			var got int
			err := s.retry(ctx, "expire", func(ctx context.Context) error {
				return s.pool.QueryRow(ctx, t.sql, now, far, n, int16(t.kind), s.slot()).Scan(&got)
			})
			if err != nil {
				return total, err
			}
			total += got
			if got < n {
				break
			}
		}
	}
	return total, nil
}
