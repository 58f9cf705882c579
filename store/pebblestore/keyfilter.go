package pebblestore

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kadstore/kadstore/record"
)

// The key filter lets AddProviders skip its read for a key that has no
// provider records yet.
//
// A write must know the stored providers of its key (to tell a refresh from
// a new record, and to check the per-key limit). Reading them is a prefix seek through the
// memtables and every level of the LSM, which cost most of the write's CPU
// (docs/BENCHMARKS.md). The key filter is a Bloom filter, in memory, of the
// Kademlia keys that have provider records: when it says a key has none, the
// write takes that for its answer without a seek.
//
// The filter must never say "none" for a key that has records (that would
// count a refresh as a new record, and let a key pass the per-key limit), so
// it is only used once it is complete: the store's first commit starts
// building it in the background from a scan of the provider records (keys
// only), and every new
// record's key is added to it (and to a filter being built) with the key's
// shard held, before the record is committed. The build registers its filter
// and opens its scan with every shard held, between commits, so a record is
// either committed before the scan's snapshot, and scanned, or added
// afterwards by its write. Until the build
// ends, writes read as before. Keys are never removed (a key whose records
// expired only costs a read); once more keys were added than the filter was
// sized for, a larger one is built the same way and replaces it.
//
// It is a blocked Bloom filter: the key's first 8 bytes choose a 512-bit
// block (one cache line), the next 8 bytes the bits set in it. Kademlia keys
// are SHA-256 digests, so their bytes are already uniform hashes.
type keyFilter struct {
	blocks []filterBlock
	keys   int64        // keys the filter was sized for
	added  atomic.Int64 // keys added (those whose records all went, too)
	ready  atomic.Bool  // every stored key has been added
}

type filterBlock [8]atomic.Uint64

const (
	filterBitsPerKey = 10
	filterProbes     = 6
)

// filterMinKeys is the smallest size of a filter: 1 M keys take 1.25 MiB.
// (A variable for tests.)
var filterMinKeys int64 = 1 << 20

func newKeyFilter(keys int64) *keyFilter {
	keys = max(keys, filterMinKeys)
	n := (uint64(keys)*filterBitsPerKey + 511) / 512
	return &keyFilter{blocks: make([]filterBlock, n), keys: keys}
}

func (f *keyFilter) probe(k *record.KadKey, set bool) bool {
	// The block is the high word of hash×blocks: uniform, without a power
	// of two's rounding up.
	i, _ := bits.Mul64(binary.LittleEndian.Uint64(k[0:8]), uint64(len(f.blocks)))
	b := &f.blocks[i]
	h := binary.LittleEndian.Uint64(k[8:16])
	for range filterProbes {
		bit := h & 511
		h >>= 9
		w := &b[bit>>6]
		m := uint64(1) << (bit & 63)
		if set {
			w.Or(m)
		} else if w.Load()&m == 0 {
			return false
		}
	}
	return true
}

func (f *keyFilter) add(k *record.KadKey) {
	f.probe(k, true)
	f.added.Add(1)
}

// mayContain reports whether k may have provider records; false is certain.
func (f *keyFilter) mayContain(k *record.KadKey) bool { return f.probe(k, false) }

// overfull reports whether more keys were added than the filter was sized
// for.
func (f *keyFilter) overfull() bool { return f.added.Load() > f.keys }

// hasNoProviders reports whether k certainly has no provider records. The
// caller holds k's shard.
func (s *Store) hasNoProviders(k *record.KadKey) bool {
	f := s.filter
	if f == nil || !f.ready.Load() || f.mayContain(k) {
		return false
	}
	s.filterSkips.Add(1)
	return true
}

// filterAdd adds a key that had no provider records to the filters. The
// caller holds k's shard.
func (s *Store) filterAdd(k *record.KadKey) {
	if s.filter != nil {
		s.filter.add(k)
	}
	if s.filterNext != nil {
		s.filterNext.add(k)
	}
}

// maybeGrowFilter starts building the filter after the store's first
// commit, and a larger one when the filter in use is overfull. (Not at Open:
// a build reads every provider key, which more than doubled the time to a
// reopened store's first answer at 10 M records, and a store opened only to
// be read needs no filter.) The caller holds some shards; the build must be
// registered with every shard held and no write uncommitted (its scan must
// see every record whose key was added only to the old filter), so a
// goroutine does it. s.growing stays set until the build ends, so that the
// commits meanwhile start none; after a failed build it stays set, and the
// old filter (if any) stays in use.
func (s *Store) maybeGrowFilter() {
	f := s.filter
	if f != nil && !f.overfull() || !s.growing.CompareAndSwap(false, true) {
		return
	}
	s.bg.Go(func() {
		lockShards(s.shards)
		defer unlockShards(s.shards)
		select {
		case <-s.stop:
			return
		default:
		}
		if f == nil {
			// Records are at least as many as keys: room for every key,
			// and for as many new ones as records share keys.
			s.startFilterBuild(s.nProviders.Load())
			return
		}
		// Twice the keys added, but no more than twice the records stored
		// (at least as many as their keys): under churn, keys whose
		// records all went are not carried over.
		s.startFilterBuild(2 * min(f.added.Load(), s.nProviders.Load()))
	})
}

// errStopped ends a filter build when the store closes.
var errStopped = errors.New("pebblestore: store closed")

// startFilterBuild registers a new filter sized for keys and starts its
// build. The caller holds every shard.
func (s *Store) startFilterBuild(keys int64) {
	f := newKeyFilter(keys)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagProv}, UpperBound: tagEnd(tagProv)})
	if err != nil {
		s.log.Error("pebblestore: key filter not built; writes read every key they write", "error", err)
		return
	}
	s.filterNext = f
	s.bg.Go(func() {
		err := s.buildFilterSafely(f, it)
		lockShards(s.shards)
		defer unlockShards(s.shards)
		s.filterNext = nil
		switch {
		case errors.Is(err, errStopped):
			return
		case err != nil:
			// The old filter (if any) stays in use: it is still complete.
			s.log.Error("pebblestore: building the key filter; writes of new keys read them until the store is opened again", "error", err)
			return
		}
		f.ready.Store(true)
		s.filter = f
		s.growing.Store(false)
	})
}

// buildFilterSafely is buildFilter, with a panic in pebble (faults.go)
// returned as an error.
func (s *Store) buildFilterSafely(f *keyFilter, it *pebble.Iterator) (err error) {
	defer s.recoverFatal(&err, false)
	return s.buildFilter(f, it)
}

// buildFilter adds the key of every provider record it to f.
func (s *Store) buildFilter(f *keyFilter, it *pebble.Iterator) error {
	defer it.Close()
	var last record.KadKey
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n++; n%4096 == 0 {
			select {
			case <-s.stop:
				return errStopped
			default:
			}
		}
		k, _, ok := parseProvKey(it.Key())
		if !ok || (n > 1 && k == last) {
			continue
		}
		last = k
		f.add(&k)
	}
	return it.Error()
}

// recentKeys remembers the provider records (their states) of the keys the
// last commits wrote, so that a write to a key written moments before (the
// providers of one key often arrive together) needs no read either. It is
// used with its shard held: commits store the states they leave, and Expire
// forgets the keys whose records it deletes.
type recentKeys struct {
	m    map[record.KadKey][]provState
	ring []record.KadKey // insertion order, for eviction
	next int
}

// recentKeysCap is how many keys recentKeys holds (per shard): with up to
// MaxProvidersPerKey states of about 70 bytes each, at most 1.4 MiB a shard
// with the default limit of 20, and typically a few hundred KiB.
const recentKeysCap = 1024

func (r *recentKeys) get(k *record.KadKey) ([]provState, bool) {
	provs, ok := r.m[*k]
	return provs, ok
}

// put remembers provs for k and takes ownership of the slice: the caller
// must not change it afterwards (get's callers copy what they change).
func (r *recentKeys) put(k *record.KadKey, provs []provState) {
	if r.m == nil {
		r.m = make(map[record.KadKey][]provState, recentKeysCap)
		r.ring = make([]record.KadKey, 0, recentKeysCap)
	}
	if _, ok := r.m[*k]; ok {
		r.m[*k] = provs
		return
	}
	if len(r.ring) < recentKeysCap {
		r.ring = append(r.ring, *k)
	} else {
		delete(r.m, r.ring[r.next])
		r.ring[r.next] = *k
		r.next = (r.next + 1) % recentKeysCap
	}
	r.m[*k] = provs
}

// forget drops k; its slot in the ring stays until it is reused.
func (r *recentKeys) forget(k *record.KadKey) { delete(r.m, *k) }

func (r *recentKeys) clear() {
	clear(r.m)
	r.ring = r.ring[:0]
	r.next = 0
}
