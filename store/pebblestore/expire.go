package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"
)

// expireChunk is how many time-index entries Expire handles per batch. Each
// batch holds s.wmu (never a reader's lock) for about a millisecond, so
// writers wait at most that long behind Expire.
const expireChunk = 1024

// Expire removes up to limit records whose expiry is at or before now, or
// more than 2×MaxTTL after now. It reads the time index (e|) from its front,
// up to now, and from 2×MaxTTL after now to its back; live records lie in
// between and are never read, so its cost grows with what it removes.
//
// It does not read the records it removes either: a time-index entry names
// its record, and writes keep exactly one entry per record (a refresh deletes
// the old one). The exception is a record whose stored bytes were damaged
// when it was replaced or removed: its old entry could not be found, so it
// is left behind (orphaned) and the record gets a guard key (g|). While any
// guard exists, Expire checks each entry against the guards, and an entry of
// a guarded record against the record's stored expiry, dropping orphans
// without touching the record.
func (s *Store) Expire(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := s.acquireWrite(ctx); err != nil {
		return 0, err
	}
	defer s.release()
	if limit <= 0 {
		limit = math.MaxInt
	}
	nowMs := floorMillis(now)
	farMs := addMillis(nowMs, s.limits.MaxTTL.Milliseconds()*2)
	// Entries before nowMs+1, and from farMs+1 on, are due. 2×MaxTTL ahead
	// is still served (Live), so farMs itself is not due.
	ranges := [][2][]byte{{{tagExpiry}, expiryBound(nil, addMillis(nowMs, 1))}}
	if farMs < math.MaxInt64 {
		ranges = append(ranges, [2][]byte{expiryBound(nil, farMs+1), tagEnd(tagExpiry)})
	}
	removed := 0
	for _, rg := range ranges {
		lower := rg[0]
		for removed < limit {
			if err := ctx.Err(); err != nil {
				return removed, err
			}
			n, next, err := s.expireChunk(lower, rg[1], min(expireChunk, limit-removed))
			removed += n
			if err != nil {
				return removed, err
			}
			if next == nil {
				break
			}
			lower = next
		}
	}
	return removed, nil
}

// floorMillis returns the Unix millisecond at or before t.
func floorMillis(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.Before(time.UnixMilli(ms)) {
		ms--
	}
	return ms
}

// expireChunk handles up to max entries of the time index in [lower, upper),
// in one batch. It returns how many records it removed and where the next
// chunk starts (nil if the range is done).
func (s *Store) expireChunk(lower, upper []byte, max int) (int, []byte, error) {
	var (
		n    int
		next []byte
	)
	err := s.write(func(t *txn) (err error) {
		n, next, err = t.expire(lower, upper, max)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return n, next, nil
}

func (t *txn) expire(lower, upper []byte, max int) (int, []byte, error) {
	s := t.s
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, nil, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	guarded := s.guards.Load() > 0
	var removedGuarded map[string]bool // guarded records this chunk removed
	n, visited := 0, 0
	var last []byte
	valid := it.First()
	for ; valid && visited < max; valid = it.Next() {
		visited++
		key := it.Key()
		last = append(last[:0], key...)
		e, ok := parseExpiryKey(key)
		if !ok {
			s.log.Error("pebblestore: malformed expiry index entry dropped", "key", fmt.Sprintf("%x", key))
			continue
		}
		if guarded {
			gk := guardKey(nil, e.kind, &e.k, e.p)
			g, err := t.guard(gk)
			if err != nil {
				return 0, nil, err
			}
			if g.cur > 0 {
				orphan, err := t.isOrphan(e, removedGuarded[string(gk)])
				if err != nil {
					return 0, nil, err
				}
				if orphan {
					g.cur--
					continue
				}
				if removedGuarded == nil {
					removedGuarded = make(map[string]bool)
				}
				removedGuarded[string(gk)] = true
			}
		}
		if err := t.removeIndexed(e); err != nil {
			return 0, nil, err
		}
		n++
	}
	if err := it.Error(); err != nil {
		return 0, nil, fmt.Errorf("pebblestore: %w", err)
	}
	s.expireVisited.Add(int64(visited))
	if visited == 0 {
		return 0, nil, nil
	}
	// Every entry in [lower, last] was visited under s.wmu, so one range
	// deletion removes them all.
	next := successor(last)
	t.b.DeleteRange(lower, next, nil)
	if !valid {
		next = nil
	}
	return n, next, nil
}

// removeIndexed deletes the record a time-index entry names, with its other
// index entries, without reading it.
func (t *txn) removeIndexed(e expiryEntry) error {
	if e.kind == kindValue {
		t.kbuf = valueKey(t.kbuf[:0], &e.k)
		t.b.Delete(t.kbuf, nil)
		t.nVal--
		return nil
	}
	p := peer.ID(e.p)
	t.kbuf = provKey(t.kbuf[:0], &e.k, p)
	t.b.Delete(t.kbuf, nil)
	t.s.recent.forget(&e.k)
	if t.s.isIndexed(p) {
		t.kbuf = peerKey(t.kbuf[:0], p, &e.k)
		t.b.Delete(t.kbuf, nil)
	}
	t.nProv--
	if t.s.perProvider {
		c, err := t.provCount(e.p)
		if err != nil {
			return err
		}
		c.cur--
	}
	return nil
}

// isOrphan decides whether an entry of a guarded record is an orphan: the
// record is gone (or this chunk already removed it), or is intact with
// another expiry. An entry of a record that is still damaged is taken as its
// own: the record is removed with it, and its other entry, if any, is then
// an orphan.
func (t *txn) isOrphan(e expiryEntry, removed bool) (bool, error) {
	if removed {
		return true, nil
	}
	if e.kind == kindValue {
		t.kbuf = valueKey(t.kbuf[:0], &e.k)
	} else {
		t.kbuf = provKey(t.kbuf[:0], &e.k, peer.ID(e.p))
	}
	v, closer, err := t.s.db.Get(t.kbuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("pebblestore: %w", err)
	}
	defer closer.Close()
	var ms int64
	var ok bool
	if e.kind == kindValue {
		ms, ok = verifyValue(v)
	} else {
		ms, ok = verifyProvider(e.p, v)
	}
	return ok && ms != e.ms, nil
}
