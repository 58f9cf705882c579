package pebblestore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// Index upkeep at Open: which peers are indexed, the conversion of layout
// version 1, and the one-pass rebuild of peer indexes and per-provider
// counts (the write path keeps them up to date after that).

// loadIndexes sets which peers are indexed, from the options and what the
// database holds. It adds to b the deletion of the indexes no longer wanted,
// and returns the peers whose index must be built (all of them if buildAll).
// A read-only store uses the indexes that are complete.
func (s *Store) loadIndexes(b *pebble.Batch) (build []peer.ID, buildAll bool, err error) {
	all, err := s.get(metaIndexedAll)
	if err != nil {
		return nil, false, err
	}
	marked, err := s.markedPeers()
	if err != nil {
		return nil, false, err
	}
	if s.opts.ReadOnly {
		s.indexAll = all != nil
		for _, p := range marked {
			s.indexed[p] = true
		}
		return nil, false, nil
	}
	if s.opts.IndexAllPeers {
		s.indexAll = true
		for _, p := range marked {
			b.Delete(append(bytes.Clone(metaIndexed), p...), nil) // subsumed
		}
		return nil, all == nil, nil
	}
	if all != nil {
		b.DeleteRange([]byte{tagPeer}, tagEnd(tagPeer), nil)
		b.Delete(metaIndexedAll, nil)
		marked = nil
	}
	for _, p := range s.opts.IndexedPeers {
		if !s.indexed[p] {
			s.indexed[p] = true
			if !slices.Contains(marked, p) {
				build = append(build, p)
			}
		}
	}
	for _, p := range marked {
		if !s.indexed[p] {
			// No longer listed: the index would go stale.
			prefix := peerPrefix(nil, p)
			b.DeleteRange(prefix, prefixEnd(prefix), nil)
			b.Delete(append(bytes.Clone(metaIndexed), p...), nil)
		}
	}
	return build, false, nil
}

// migrateV1 converts a store of layout version 1: its provider time-index
// entries held the full Kademlia key and provider ID, and records whose
// entries had been orphaned had guard keys. Each entry is rewritten in the
// short form and the guards are dropped (Expire now checks every entry
// against its record). It works in batches and sets the version last, so a
// crash part way through makes the next Open start it again.
func (s *Store) migrateV1() error {
	s.log.Info("pebblestore: converting the time index to layout version 2")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagExpiry}, UpperBound: tagEnd(tagExpiry)})
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	w := s.newBatchWriter()
	defer w.close()
	var kbuf []byte
	n := 0
	for it.First(); it.Valid(); it.Next() {
		ms, k, ok := v1ExpiryKey(it.Key())
		if !ok {
			continue // a value's entry, the same in both versions
		}
		w.b.Delete(it.Key(), nil)
		kbuf = expiryKey(kbuf[:0], ms, kindProvider, &k)
		w.b.Set(kbuf, nil, nil)
		n++
		if err := w.commitIfFull(); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	w.b.DeleteRange([]byte{tagGuard}, tagEnd(tagGuard), nil)
	w.b.Set(metaVersion, []byte{layoutVersion}, nil)
	if err := w.commit(); err != nil {
		return err
	}
	s.log.Info("pebblestore: time index converted", "entries", n)
	return nil
}

// isIndexed reports whether p's provider records have peer index entries.
func (s *Store) isIndexed(p peer.ID) bool { return s.indexAll || s.indexed[p] }

// markedPeers returns the peers whose index is complete.
func (s *Store) markedPeers() ([]peer.ID, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: metaIndexed, UpperBound: prefixEnd(metaIndexed)})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	var out []peer.ID
	for it.First(); it.Valid(); it.Next() {
		out = append(out, peer.ID(it.Key()[len(metaIndexed):]))
	}
	return out, it.Error()
}

// batchWriter writes a long run of changes in batches of about 4 MiB, for
// Open's one-pass jobs (rebuild, migrateV1): a crash between two batches
// makes the next Open do the job again.
type batchWriter struct {
	db *pebble.DB
	b  *pebble.Batch
}

func (s *Store) newBatchWriter() *batchWriter {
	return &batchWriter{db: s.db, b: s.db.NewBatch()}
}

// commit commits the batch and starts the next.
func (w *batchWriter) commit() error {
	err := w.b.Commit(pebble.Sync)
	w.b.Close()
	w.b = w.db.NewBatch()
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	return nil
}

// commitIfFull commits the batch once it holds 4 MiB.
func (w *batchWriter) commitIfFull() error {
	if w.b.Len() > 4<<20 {
		return w.commit()
	}
	return nil
}

func (w *batchWriter) close() { w.b.Close() }

// rebuildFlushAt is the number of providers whose counts rebuild gathers in
// memory before adding them to the stored counts, so that its memory stays
// bounded whatever the number of providers.
const rebuildFlushAt = 100_000

// rebuild makes, in one pass over the provider records, the peer index of
// the peers in build, and (if counts) the per-provider counts. It runs in
// Open, before any other writer.
func (s *Store) rebuild(build []peer.ID, all, counts bool) error {
	s.log.Info("pebblestore: building indexes", "peers", len(build), "all peers", all, "provider counts", counts)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagProv}, UpperBound: tagEnd(tagProv)})
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	w := s.newBatchWriter()
	defer w.close()
	if counts {
		w.b.DeleteRange([]byte{tagCount}, tagEnd(tagCount), nil)
		if err := w.commit(); err != nil {
			return err
		}
	}
	pending := make(map[string]int64)
	addCounts := func() error {
		for p, n := range pending {
			key := countKey(nil, []byte(p))
			v, err := s.get(key)
			if err != nil {
				return err
			}
			if v != nil {
				have, size := binary.Uvarint(v)
				if size <= 0 {
					return fmt.Errorf("%w: provider count of %d bytes", store.ErrCorrupt, len(v))
				}
				n += int64(have)
			}
			w.b.Set(key, binary.AppendUvarint(nil, uint64(n)), nil)
		}
		clear(pending)
		return w.commit()
	}
	var kbuf, last []byte
	for valid := it.First(); ; valid = it.Next() {
		if !valid {
			err := it.Error()
			if err == nil || !pebble.IsCorruptionError(err) {
				break
			}
			// Records that cannot be read cannot be indexed or counted
			// either: step over them (kadstore check reports them).
			s.log.Error("pebblestore: building indexes: records unreadable after a key; skipped", "after", fmt.Sprintf("%x", last), "error", firstLine(err))
			from := last
			if from == nil {
				from = []byte{tagProv}
			}
			if !skipDamage(it, from, tagEnd(tagProv)) {
				break
			}
		}
		last = append(last[:0], it.Key()...)
		k, p, ok := parseProvKey(it.Key())
		if !ok {
			continue
		}
		if all || slices.Contains(build, peer.ID(p)) {
			kbuf = peerKey(kbuf[:0], peer.ID(p), &k)
			w.b.Set(kbuf, nil, nil)
		}
		if counts {
			pending[string(p)]++
			if len(pending) >= rebuildFlushAt {
				if err := addCounts(); err != nil {
					return err
				}
			}
		}
		if err := w.commitIfFull(); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil && !pebble.IsCorruptionError(err) {
		return fmt.Errorf("pebblestore: %w", err)
	}
	if counts {
		if err := addCounts(); err != nil {
			return err
		}
		w.b.Set(metaPerProvider, nil, nil)
	}
	for _, p := range build {
		w.b.Set(append(bytes.Clone(metaIndexed), p...), nil, nil)
	}
	if all {
		w.b.Set(metaIndexedAll, nil, nil)
	}
	return w.commit()
}
