package pebblestore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// expireChunk is how many time-index entries Expire handles per batch. Each
// batch holds every shard's lock (never a reader's lock) for about a
// millisecond, so writers wait at most that long behind Expire.
const expireChunk = 1024

// Expire removes up to limit records whose expiry is at or before now, or
// more than 2×MaxTTL after now. It reads the time index (e|) from its front,
// up to now, and from 2×MaxTTL after now to its back; live records lie in
// between and are never read, so its cost grows with what it removes.
//
// A time-index entry names its records by a prefix of their Kademlia key
// (keys.go), and a refresh or removal leaves the entry of the old expiry in
// place, so Expire checks each due entry against the records it may name:
// one forward step or seek to the key prefix, and the stored expiry of the
// records there. A record is removed when its expiry is the entry's, or when
// its bytes are damaged (its expiry cannot be trusted, and it cannot be
// served); an entry whose records are gone or have other expiries is dropped
// alone. Entries are taken in chunks, each sorted by key prefix, so the
// reads of a chunk move forward through the provider records. An entry that
// names more records than the limit leaves room for is kept for the next
// call, with the records not yet removed.
func (s *Store) Expire(ctx context.Context, now time.Time, limit int) (removed int, err error) {
	if err := s.acquireWrite(ctx, false); err != nil {
		return 0, err
	}
	defer s.release()
	defer s.recoverFatal(&err, true)
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
	for _, rg := range ranges {
		lower := rg[0]
		for removed < limit {
			if err := ctx.Err(); err != nil {
				return removed, err
			}
			n, next, err := s.expireChunk(lower, rg[1], min(expireChunk, limit-removed))
			removed += n
			if err != nil && (errors.Is(err, store.ErrCorrupt) || pebble.IsCorruptionError(err)) {
				// Damage in the time index or in the records it names:
				// step over it, so that it does not stop expiry for good.
				// What it covers stays until kadstore check --repair.
				s.log.Warn("pebblestore: expire steps over damaged data", "error", firstLine(err))
				next, err = s.skipExpiryDamage(lower, rg[1])
				if next != nil && bytes.Compare(next, lower) <= 0 {
					next = nil // no progress: give up on the range for this call
				}
			}
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

// skipExpiryDamage returns the first time-index key in [lower, upper),
// after lower, that reads without damage; nil if there is none.
func (s *Store) skipExpiryDamage(lower, upper []byte) ([]byte, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	if !skipDamage(it, lower, upper) {
		return nil, nil
	}
	return bytes.Clone(it.Key()), nil
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
	err := s.writeShards(s.shards, func(t *txn) (err error) {
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
	var (
		entries []expiryEntry
		last    []byte
	)
	valid := it.First()
	for ; valid && len(entries) < max; valid = it.Next() {
		key := it.Key()
		last = append(last[:0], key...)
		e, ok := parseExpiryKey(key)
		if !ok {
			s.log.Error("pebblestore: malformed expiry index entry dropped", "key", fmt.Sprintf("%x", key))
			continue
		}
		entries = append(entries, e)
	}
	if err := it.Error(); err != nil {
		return 0, nil, fmt.Errorf("pebblestore: %w", err)
	}
	if last == nil {
		return 0, nil, nil
	}
	s.expireVisited.Add(int64(len(entries)))
	n, done, err := t.removeDue(entries, max)
	if err != nil {
		return 0, nil, err
	}
	if done < len(entries) {
		// The limit was reached before every record the entries name was
		// removed: drop only the entries that are done, and keep the rest
		// for the next call.
		for _, e := range entries[:done] {
			t.kbuf = expiryKey(t.kbuf[:0], e.ms, e.kind, &e.k)
			t.b.Delete(t.kbuf, nil)
		}
		return n, lower, nil
	}
	// Every entry in [lower, last] was visited with every shard held, so one
	// range deletion removes them all.
	next := successor(last)
	t.b.DeleteRange(lower, next, nil)
	if !valid {
		next = nil
	}
	return n, next, nil
}

// removeDue removes the records the due entries name (see Expire), at most
// max, and returns how many it removed and how many entries (of entries, in
// the order it sorts them into) are done: every record they name is removed.
// Entries are sorted, grouped by key prefix, and the records of each prefix
// are read once; between prefixes the iterator steps forward when the next
// prefix is near, as it is when many records fall due together, and seeks
// otherwise.
func (t *txn) removeDue(entries []expiryEntry, max int) (n, done int, err error) {
	slices.SortFunc(entries, func(a, b expiryEntry) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		if c := bytes.Compare(a.k[:], b.k[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.ms, b.ms)
	})
	it, err := t.s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagProv}, UpperBound: tagEnd(tagProv)})
	if err != nil {
		return 0, 0, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	var (
		prefix  [1 + expiryKadLen]byte
		removed map[string]bool // value keys removed by this chunk
	)
	prefix[0] = tagProv
	for i := 0; i < len(entries); {
		e := entries[i]
		if e.kind == kindValue {
			if n == max {
				return n, i, nil
			}
			if removed == nil {
				removed = make(map[string]bool)
			}
			ok, err := t.removeDueValue(e, removed)
			if err != nil {
				return n, i, err
			}
			if ok {
				n++
			}
			i++
			continue
		}
		j := i + 1
		for j < len(entries) && entries[j].kind == kindProvider && entries[j].k == e.k {
			j++
		}
		group := entries[i:j]
		copy(prefix[1:], e.k[:expiryKadLen])
		var readErr error
		for valid := seekForward(it, prefix[:]); valid; valid = it.Next() {
			key := it.Key()
			if !bytes.HasPrefix(key, prefix[:]) {
				break
			}
			k, p, ok := parseProvKey(key)
			if !ok {
				continue
			}
			due, err := dueIn(group, p, it)
			if err != nil {
				readErr = err
				break
			}
			if !due {
				continue
			}
			if n == max {
				return n, i, nil // this group is not done
			}
			if err := t.removeProvider(&k, peer.ID(p)); err != nil {
				return n, i, err
			}
			n++
		}
		if readErr == nil {
			readErr = it.Error()
		}
		if readErr != nil {
			if !pebble.IsCorruptionError(readErr) {
				return n, i, fmt.Errorf("pebblestore: %w", readErr)
			}
			// The records of these entries cannot be read, so whether
			// they are due cannot be told: leave them (kadstore check
			// reports them, --repair drops them) and let the entries go
			// with the chunk, so that the damage does not stop expiry.
			t.s.faults.corruptRead("expire", readErr)
			t.s.log.Warn("pebblestore: expire steps over records it cannot read", "kadkey_prefix", fmt.Sprintf("%x", e.k[:expiryKadLen]), "error", firstLine(readErr))
		}
		i = j
	}
	return n, len(entries), nil
}

// seekForward positions it at the first key at or after target, which
// should not lie before its current position: it steps with Next while that
// is likely cheaper than a seek.
func seekForward(it *pebble.Iterator, target []byte) bool {
	if it.Valid() {
		for range 32 {
			if bytes.Compare(it.Key(), target) >= 0 {
				return true
			}
			if !it.Next() {
				return false
			}
		}
	}
	return it.SeekGE(target)
}

// dueIn reports whether the provider record at it, of provider p, is named
// by one of the entries of its key prefix: one with the record's expiry, or
// any, for a record whose bytes are damaged (its expiry cannot be trusted).
func dueIn(group []expiryEntry, p []byte, it *pebble.Iterator) (bool, error) {
	v, err := it.ValueAndErr()
	if err != nil {
		return false, fmt.Errorf("pebblestore: %w", err)
	}
	ms, intact := verifyProvider(p, v)
	if !intact {
		return true, nil
	}
	for _, e := range group {
		if e.ms == ms {
			return true, nil
		}
	}
	return false, nil
}

// removeDueValue removes the value record a due entry names, if the entry is
// its own.
func (t *txn) removeDueValue(e expiryEntry, removed map[string]bool) (bool, error) {
	key := valueKey(nil, &e.k)
	if removed[string(key)] {
		return false, nil
	}
	v, closer, err := t.s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil && pebble.IsCorruptionError(err) {
		// As for provider records (removeDue): left, the entry goes.
		t.s.faults.corruptRead("expire", err)
		t.s.log.Warn("pebblestore: expire steps over a value record it cannot read", "kadkey", e.k.String(), "error", firstLine(err))
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pebblestore: %w", err)
	}
	ms, ok := verifyValue(v)
	closer.Close()
	if ok && ms != e.ms {
		return false, nil
	}
	removed[string(key)] = true
	t.b.Delete(key, nil)
	t.dVal--
	return true, nil
}

// removeProvider deletes the provider record (k, p) with its peer index
// entry and counts.
func (t *txn) removeProvider(k *record.KadKey, p peer.ID) error {
	t.kbuf = provKey(t.kbuf[:0], k, p)
	t.b.Delete(t.kbuf, nil)
	t.s.shardOf(k).recent.forget(k)
	if t.s.isIndexed(p) {
		t.kbuf = peerKey(t.kbuf[:0], p, k)
		t.b.Delete(t.kbuf, nil)
	}
	t.dProv--
	if t.s.perProvider {
		c, err := t.provCount([]byte(p))
		if err != nil {
			return err
		}
		c.cur--
	}
	return nil
}
