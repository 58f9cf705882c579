package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// txn is one batch of writes being built, and then committed, with the locks
// of its shards held (shard.go).
// Writes in the same batch must see each other (two records of one key, or
// several AddProviders calls committed together), but a pebble batch is
// write-only, so txn keeps what the batch changes in small overlays: the
// providers of each key it touched, the counters and per-provider counts.
// Everything else is read from the database, where no one else writes the
// keys of the txn's shards meanwhile.
type txn struct {
	s      *Store
	shards []*shard // held, in shard order
	b      *pebble.Batch
	it     *pebble.Iterator // opened lazily; sees the database as of its opening

	// dProv and dVal are the changes to the record counts; reserved is the
	// room reserved for new records in s.nRecords.
	dProv, dVal, reserved int64
	provLocked            bool // holds s.provMu
	keys                  map[record.KadKey]*keyState
	provCounts            map[string]*counter // by provider bytes

	kbuf, vbuf []byte // scratch for keys and values
}

// keyState is what txn knows of the provider records of one key: all of
// them, as stored in the database plus the batch.
type keyState struct {
	provs []provState
}

type provState struct {
	id  peer.ID
	exp int64 // Unix ms, if ok
	ok  bool  // the stored value's checksum holds
}

func (ks *keyState) find(p peer.ID) int {
	for i := range ks.provs {
		if ks.provs[i].id == p {
			return i
		}
	}
	return -1
}

// counter is an overlaid count: its value in the database and after the
// batch.
type counter struct{ orig, cur int64 }

// newTxn starts a txn; the caller holds the shards' locks. Txns are reused
// (close returns them), with their maps and buffers: a small AddProviders
// call would otherwise allocate them all again.
func (s *Store) newTxn(shards []*shard) *txn {
	t, _ := s.txns.Get().(*txn)
	if t == nil {
		t = &txn{s: s}
	}
	t.shards = shards
	t.b = s.db.NewBatch()
	return t
}

// reserve reserves room for n new records (the MaxRecords limit).
func (t *txn) reserve(n int64) error {
	if have, ok := t.s.reserve(n); !ok {
		return fmt.Errorf("%w: %d records stored, %d new, limit %d", store.ErrStoreFull, have, n, t.s.limits.MaxRecords)
	}
	t.reserved += n
	return nil
}

// iter returns the txn's iterator over the database.
func (t *txn) iter() (*pebble.Iterator, error) {
	if t.it == nil {
		// Most seeks are for keys that are not stored: let the bloom
		// filters of L6, where most records live, answer them too.
		it, err := t.s.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
		if err != nil {
			return nil, fmt.Errorf("pebblestore: %w", err)
		}
		t.it = it
	}
	return t.it, nil
}

// keyState returns the provider records of k, reading them on first use:
// one prefix seek, answered by the bloom filters for a new key.
func (t *txn) keyState(k *record.KadKey) (*keyState, error) {
	if ks, ok := t.keys[*k]; ok {
		return ks, nil
	}
	if t.keys == nil {
		t.keys = make(map[record.KadKey]*keyState)
	}
	if provs, ok := t.s.shardOf(k).recent.get(k); ok {
		ks := &keyState{provs: append([]provState(nil), provs...)}
		t.keys[*k] = ks
		t.s.recentHits.Add(1)
		return ks, nil
	}
	ks := &keyState{}
	if t.s.hasNoProviders(k) {
		t.keys[*k] = ks
		return ks, nil
	}
	it, err := t.iter()
	if err != nil {
		return nil, err
	}
	t.kbuf = provPrefix(t.kbuf[:0], k)
	err = t.s.eachProvider(it, t.kbuf, func() { ks.provs = ks.provs[:0] }, func(p, v []byte) bool {
		st := provState{id: peer.ID(p)}
		st.exp, st.ok = verifyProvider(p, v)
		ks.provs = append(ks.provs, st)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	t.keys[*k] = ks
	return ks, nil
}

// putProvider writes r, whose Kademlia key is k, as a refresh of the stored
// record of its provider if there is one, and as a new record otherwise.
// Count limits were checked by the caller.
//
// The record gets a time-index entry for its expiry unless the record it
// refreshes had the same one. The entry of the old expiry stays: Expire
// drops it when it falls due, seeing that the record's expiry is another
// (expire.go), so a write never reads or deletes time-index entries.
func (t *txn) putProvider(k *record.KadKey, r record.ProviderRecord) {
	ks := t.keys[*k] // loaded by the caller's checks
	ms := r.Expires.UnixMilli()
	t.vbuf = appendProviderValue(t.vbuf[:0], r)
	t.kbuf = provKey(t.kbuf[:0], k, r.Provider)
	t.b.Set(t.kbuf, t.vbuf, nil)
	if i := ks.find(r.Provider); i >= 0 {
		old := ks.provs[i]
		ks.provs[i] = provState{id: r.Provider, exp: ms, ok: true}
		if old.ok && old.exp == ms {
			return
		}
	} else {
		if len(ks.provs) == 0 {
			t.s.filterAdd(k) // a key without providers until now
		}
		ks.provs = append(ks.provs, provState{id: r.Provider, exp: ms, ok: true})
		if t.s.isIndexed(r.Provider) {
			t.kbuf = peerKey(t.kbuf[:0], r.Provider, k)
			t.b.Set(t.kbuf, nil, nil)
		}
		t.dProv++
		if t.s.perProvider {
			t.provCounts[string(r.Provider)].cur++ // loaded by the checks
		}
	}
	t.kbuf = expiryKey(t.kbuf[:0], ms, kindProvider, k)
	t.b.Set(t.kbuf, nil, nil)
}

// deleteProvider removes the stored record of p for k, described by st, and
// drops it from the key's state if the txn holds it. Its time-index entry
// stays until it falls due (Expire then finds no record).
func (t *txn) deleteProvider(k *record.KadKey, st provState) error {
	if ks, ok := t.keys[*k]; ok {
		if i := ks.find(st.id); i >= 0 {
			ks.provs = append(ks.provs[:i], ks.provs[i+1:]...)
		}
	}
	return t.removeProvider(k, st.id)
}

// provCount returns the overlaid record count of provider p.
func (t *txn) provCount(p []byte) (*counter, error) {
	if c, ok := t.provCounts[string(p)]; ok {
		return c, nil
	}
	if !t.provLocked {
		t.s.provMu.Lock()
		t.provLocked = true
	}
	c := &counter{}
	if n, ok := t.s.provCache[string(p)]; ok {
		c.orig, c.cur = n, n
	} else if err := t.readProvCount(p, c); err != nil {
		return nil, err
	}
	if t.provCounts == nil {
		t.provCounts = make(map[string]*counter)
	}
	t.provCounts[string(p)] = c
	return c, nil
}

// readProvCount reads the stored record count of provider p into c.
func (t *txn) readProvCount(p []byte, c *counter) error {
	t.kbuf = countKey(t.kbuf[:0], p)
	v, err := t.s.get(t.kbuf)
	if err != nil {
		return err
	}
	if v != nil {
		n, w := binary.Uvarint(v)
		if w <= 0 {
			return fmt.Errorf("pebblestore: provider count of %d bytes", len(v))
		}
		c.orig, c.cur = int64(n), int64(n)
	}
	return nil
}

// commit writes the overlays' changes into the batch and applies it, without
// waiting for the log write (and, with Options.Sync, its fsync), so that the
// caller can release its shards first and let the next batch share them;
// the caller then calls wait, which returns once the write is durable.
func (t *txn) commit() (wait func() error, err error) {
	s := t.s
	first := t.shards[0]
	if t.dProv != 0 || t.dVal != 0 {
		t.b.Set(countKeyOf(first.idx), encodeCounts(first.nProv+t.dProv, first.nVal+t.dVal), nil)
	}
	for p, c := range t.provCounts {
		if c.cur == c.orig {
			continue
		}
		t.kbuf = countKey(t.kbuf[:0], []byte(p))
		if c.cur <= 0 {
			t.b.Delete(t.kbuf, nil)
		} else {
			t.b.Set(t.kbuf, binary.AppendUvarint(nil, uint64(c.cur)), nil)
		}
	}
	if t.b.Empty() {
		s.nRecords.Add(-t.reserved)
		return nil, nil
	}
	// A synced commit, applied without waiting for the sync so that the
	// caller can release the shards first and let the next batch join it.
	// Without Options.Sync the "sync" is the log's write to the page cache
	// (see durability.go).
	err = s.apply(t.b)
	wait = t.b.SyncWait
	if err != nil {
		s.nRecords.Add(-t.reserved)
		for k := range t.keys {
			s.shardOf(&k).recent.forget(&k)
		}
		for p := range t.provCounts {
			delete(s.provCache, p)
		}
		return nil, err
	}
	s.space.wrote(len(t.b.Repr()))
	if t.provLocked {
		if len(s.provCache)+len(t.provCounts) > provCacheCap {
			clear(s.provCache)
		}
		for p, c := range t.provCounts {
			s.provCache[p] = c.cur
		}
	}
	for k, ks := range t.keys {
		s.shardOf(&k).recent.put(&k, ks.provs)
	}
	first.nProv += t.dProv
	first.nVal += t.dVal
	s.nProviders.Add(t.dProv)
	s.nValues.Add(t.dVal)
	s.nRecords.Add(t.dProv + t.dVal - t.reserved)
	if len(t.keys) > 0 {
		// Only writes of provider records use the filter; Expire, which
		// holds no key states, does not start its build.
		s.maybeGrowFilter()
	}
	return wait, nil
}

// apply applies b without waiting for its log write (txn.commit), turning
// a failure or a fatal error of pebble into the error of the write.
func (s *Store) apply(b *pebble.Batch) (err error) {
	defer s.recoverFatal(&err, true)
	if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		return s.writeErr(err)
	}
	return nil
}

// syncWait waits for the log write of a batch apply applied.
func (s *Store) syncWait(wait func() error) (err error) {
	defer s.recoverFatal(&err, true)
	if err := wait(); err != nil {
		return s.writeErr(err)
	}
	return nil
}

// releaseProv releases s.provMu if the txn holds it.
func (t *txn) releaseProv() {
	if t.provLocked {
		t.s.provMu.Unlock()
		t.provLocked = false
	}
}

// close releases the txn's iterator, batch and provMu; after commit with a
// wait, only once wait has returned.
func (t *txn) close() {
	t.releaseProv()
	var errs []error
	if t.it != nil {
		errs = append(errs, t.it.Close())
		t.it = nil
	}
	errs = append(errs, t.b.Close())
	if err := errors.Join(errs...); err != nil {
		t.s.log.Error("pebblestore: releasing a batch", "error", err)
	}
	s := t.s
	clear(t.keys)
	clear(t.provCounts)
	*t = txn{s: s, keys: t.keys, provCounts: t.provCounts, kbuf: t.kbuf[:0], vbuf: t.vbuf[:0]}
	s.txns.Put(t)
}
