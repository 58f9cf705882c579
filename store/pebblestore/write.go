package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// maxGroupRecords caps the records one group commit takes from the queue
// (a request is never split, so a larger one forms a group of its own).
const maxGroupRecords = 8192

// addRequest is one AddProviders call waiting for a group commit.
type addRequest struct {
	ctx  context.Context
	recs []store.ProviderRecord
	kks  []record.KadKey // the records' Kademlia keys
	err  error
	done bool          // set by the committing goroutine before wake
	wake chan struct{} // capacity 1; signalled when done
}

// AddProviders stores the records as one atomic batch.
//
// A call whose records all belong to one shard (shard.go), as a call of one
// record does, goes through the shard's group commit: it queues its request,
// and whichever caller holds the shard's leader token takes the queued
// requests, applies them one after the other to one pebble batch (each
// request all or nothing), commits that batch once and wakes their callers.
// So the cost of a commit, and of an fsync with Options.Sync, is shared by
// every call that arrived while the previous one was running, and calls for
// different shards commit in parallel. A call spanning shards holds them all
// and commits alone.
func (s *Store) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	if err := s.acquireWrite(ctx, true); err != nil {
		return err
	}
	defer s.release()
	now := s.now()
	for i, r := range recs {
		if err := s.limits.CheckProvider(r, now); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	kks := make([]record.KadKey, len(recs))
	for i, r := range recs {
		kks[i] = record.KadKeyOf(r.Key)
	}
	sh := s.shardOf(&kks[0])
	if len(kks) > 1 {
		if shards := s.shardsOf(kks); len(shards) > 1 {
			return s.writeShards(shards, func(t *txn) error { return t.addProviders(recs, kks) })
		}
	}
	req := &addRequest{ctx: ctx, recs: recs, kks: kks, wake: make(chan struct{}, 1)}
	sh.qmu.Lock()
	sh.queue = append(sh.queue, req)
	sh.qmu.Unlock()
	for {
		select {
		case <-req.wake:
			return req.err
		case sh.leader <- struct{}{}:
			// req.done may have been set by the previous leader (whose
			// release of the token happens before this acquisition).
			s.lead(sh, req)
			<-sh.leader
			return req.err
		}
	}
}

// lead commits groups of sh's queued requests until own is done. The caller
// holds sh's leader token; every request it finds queued is waiting for the
// token or for its wake signal, so none is stranded when lead returns.
func (s *Store) lead(sh *shard, own *addRequest) {
	for !own.done {
		sh.qmu.Lock()
		n, recs := 0, 0
		for n < len(sh.queue) && (n == 0 || recs+len(sh.queue[n].recs) <= maxGroupRecords) {
			recs += len(sh.queue[n].recs)
			n++
		}
		group := append([]*addRequest(nil), sh.queue[:n]...)
		m := copy(sh.queue, sh.queue[n:])
		clear(sh.queue[m:])
		sh.queue = sh.queue[:m]
		sh.qmu.Unlock()

		s.commitGroup(sh, group)
		for _, r := range group {
			r.done = true
			if r != own {
				r.wake <- struct{}{}
			}
		}
	}
}

// commitGroup applies the requests to one batch and commits it.
func (s *Store) commitGroup(sh *shard, group []*addRequest) {
	err := s.writeShards([]*shard{sh}, func(t *txn) error {
		for _, r := range group {
			if err := r.ctx.Err(); err != nil {
				r.err = err
				continue
			}
			r.err = t.addProviders(r.recs, r.kks)
		}
		return nil
	})
	if err != nil {
		for _, r := range group {
			if r.err == nil {
				r.err = err
			}
		}
	}
}

// addProviders applies one AddProviders call to the txn: it reads what it
// needs and checks every count limit first, and only then writes, so a call
// that fails changes nothing. Limits are checked in the order memstore (the
// reference) checks them: per key, per provider, then the whole store.
func (t *txn) addProviders(recs []store.ProviderRecord, kks []record.KadKey) error {
	// Read the keys' providers in key order: consecutive seeks that move
	// forward let pebble reuse its position in each level.
	order := make([]int, len(recs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(kks[a][:], kks[b][:]) })
	n, err := t.countNew(recs, kks, order)
	if err != nil {
		return err
	}
	if n.added > 0 {
		if err := t.checkCounts(n); err != nil {
			return err
		}
	}
	for _, i := range order {
		t.putProvider(&kks[i], recs[i])
	}
	return nil
}

// newRecords counts the records of one call that the store does not hold
// yet: in all, per key and per provider.
// A call of one new record (the common case) leaves the maps nil and names
// it in key and prov: maps that escape would cost two allocations a call.
type newRecords struct {
	added   int64
	perKey  map[record.KadKey]int
	perProv map[peer.ID]int64
	key     record.KadKey
	prov    peer.ID
}

// countNew reads the providers of the records' keys (in order) and counts
// the new records, each (key, provider) once.
func (t *txn) countNew(recs []store.ProviderRecord, kks []record.KadKey, order []int) (newRecords, error) {
	var (
		n    newRecords
		seen map[store.Position]bool
	)
	for _, i := range order {
		r := recs[i]
		ks, err := t.keyState(&kks[i])
		if err != nil {
			return n, err
		}
		if ks.find(r.Provider) >= 0 {
			continue
		}
		if len(recs) > 1 {
			if seen == nil {
				seen = make(map[store.Position]bool)
				n.perKey = make(map[record.KadKey]int)
				n.perProv = make(map[peer.ID]int64)
			}
			pos := store.Position{Key: kks[i], Provider: r.Provider}
			if seen[pos] {
				continue
			}
			seen[pos] = true
			n.perKey[kks[i]]++
			n.perProv[r.Provider]++
		}
		if n.added == 0 {
			n.key, n.prov = kks[i], r.Provider
		}
		n.added++
	}
	return n, nil
}

// checkCounts checks the count limits for the new records, in memstore's
// order (per key, per provider, the whole store), reserving room in the
// last.
func (t *txn) checkCounts(n newRecords) error {
	limits := &t.s.limits
	if limit := limits.MaxProvidersPerKey; limit > 0 {
		check := func(k record.KadKey, c int) error {
			if have := len(t.keys[k].provs); have+c > limit {
				return fmt.Errorf("%w: key %.16s has %d, %d new, limit %d", store.ErrTooManyProviders, k, have, c, limit)
			}
			return nil
		}
		if n.perKey == nil {
			if err := check(n.key, 1); err != nil {
				return err
			}
		}
		for k, c := range n.perKey {
			if err := check(k, c); err != nil {
				return err
			}
		}
	}
	if limit := limits.MaxRecordsPerProvider; limit > 0 && t.s.perProvider {
		check := func(p peer.ID, c int64) error {
			have, err := t.provCount([]byte(p))
			if err != nil {
				return err
			}
			if have.cur+c > limit {
				return fmt.Errorf("%w: %s has %d, %d new, limit %d", store.ErrProviderFull, p, have.cur, c, limit)
			}
			return nil
		}
		if n.perProv == nil {
			if err := check(n.prov, 1); err != nil {
				return err
			}
		}
		for p, c := range n.perProv {
			if err := check(p, c); err != nil {
				return err
			}
		}
	}
	return t.reserve(n.added)
}

// RemoveProvider removes the record of provider p for key, if any.
func (s *Store) RemoveProvider(ctx context.Context, key []byte, p peer.ID) error {
	if err := s.acquireWrite(ctx, false); err != nil {
		return err
	}
	defer s.release()
	if err := s.limits.CheckKey(key); err != nil {
		return err
	}
	if err := store.CheckPeer(p); err != nil {
		return err
	}
	k := record.KadKeyOf(key)
	return s.write(&k, func(t *txn) error {
		ks, err := t.keyState(&k)
		if err != nil {
			return err
		}
		i := ks.find(p)
		if i < 0 {
			return nil
		}
		return t.deleteProvider(&k, ks.provs[i])
	})
}

// PutValue stores r, replacing any record with the same key.
func (s *Store) PutValue(ctx context.Context, r store.ValueRecord) error {
	if err := s.acquireWrite(ctx, true); err != nil {
		return err
	}
	defer s.release()
	if err := s.limits.CheckValue(r, s.now()); err != nil {
		return err
	}
	k := record.KadKeyOf(r.Key)
	return s.write(&k, func(t *txn) error {
		old, found, err := t.valueState(&k)
		if err != nil {
			return err
		}
		ms := r.Expires.UnixMilli()
		if !found {
			if err := t.reserve(1); err != nil {
				return err
			}
			t.dVal++
		}
		t.kbuf = valueKey(t.kbuf[:0], &k)
		t.vbuf = appendValueValue(t.vbuf[:0], r)
		t.b.Set(t.kbuf, t.vbuf, nil)
		if found && old.ok && old.exp == ms {
			return nil // its time-index entry is the one it has
		}
		// The entry of an old expiry stays until Expire drops it (see
		// putProvider).
		t.kbuf = expiryKey(t.kbuf[:0], ms, kindValue, &k)
		t.b.Set(t.kbuf, nil, nil)
		return nil
	})
}

// DeleteValue removes the record with the key, if any.
func (s *Store) DeleteValue(ctx context.Context, key []byte) error {
	if err := s.acquireWrite(ctx, false); err != nil {
		return err
	}
	defer s.release()
	if err := s.limits.CheckKey(key); err != nil {
		return err
	}
	k := record.KadKeyOf(key)
	return s.write(&k, func(t *txn) error {
		_, found, err := t.valueState(&k)
		if err != nil || !found {
			return err
		}
		t.kbuf = valueKey(t.kbuf[:0], &k)
		t.b.Delete(t.kbuf, nil)
		t.dVal--
		return nil
	})
}

// valueState reads the stored value record of k: its expiry and whether it
// is intact.
func (t *txn) valueState(k *record.KadKey) (provState, bool, error) {
	t.kbuf = valueKey(t.kbuf[:0], k)
	v, closer, err := t.s.db.Get(t.kbuf)
	if errors.Is(err, pebble.ErrNotFound) {
		return provState{}, false, nil
	}
	if err != nil {
		return provState{}, false, fmt.Errorf("pebblestore: %w", err)
	}
	defer closer.Close()
	var st provState
	st.exp, st.ok = verifyValue(v)
	return st, true, nil
}

// write runs f on a new txn holding the shard of k, and commits what it
// wrote, unless f fails.
func (s *Store) write(k *record.KadKey, f func(t *txn) error) error {
	return s.writeShards([]*shard{s.shardOf(k)}, f)
}

// runTxn runs f on t, returning damage it read as store.ErrCorrupt and a
// panic in pebble as an error (faults.go).
func (s *Store) runTxn(t *txn, f func(t *txn) error) (err error) {
	defer s.recoverFatal(&err, false)
	err = f(t)
	if err != nil && pebble.IsCorruptionError(err) && !errors.Is(err, store.ErrCorrupt) {
		err = s.faults.corruptRead("write", err)
	}
	return err
}

// writeShards runs f on a new txn holding the shards (in shard order), and
// commits what it wrote, unless f fails. The shards are released once pebble
// has applied the batch; the call returns once the batch is durable.
func (s *Store) writeShards(shards []*shard, f func(t *txn) error) error {
	lockShards(shards)
	t := s.newTxn(shards)
	err := s.runTxn(t, f)
	var wait func() error
	if err == nil {
		wait, err = t.commit()
	} else {
		s.nRecords.Add(-t.reserved)
	}
	// The batch is applied (visible): the next writer may read the counts
	// and keys it changed, while this one waits for the log.
	t.releaseProv()
	unlockShards(shards)
	if err == nil && wait != nil {
		err = s.syncWait(wait)
	}
	t.close()
	return err
}
