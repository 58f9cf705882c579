package pebblestore

import (
	"encoding/binary"
	"sync"

	"github.com/kadstore/kadstore/record"
)

// Writers are split into shards by Kademlia key, so that writes to different
// keys commit in parallel: pebble applies concurrent batches to its memtable
// concurrently, and the memtable insert was the largest serial cost of a
// write once reads were mostly saved (docs/BENCHMARKS.md). A shard owns the
// read-modify-write of its keys: a txn holds the lock of every shard whose
// keys it touches, taken in shard order, from its first read until pebble
// has applied its batch, so writes to one key are applied in the order their
// reads saw. Everything a txn reads or changes belongs to a shard it holds,
// except:
//
//   - the record counts: each shard keeps its part in m|n|shard (a part may
//     be negative: Expire writes its removals into the first shard's part),
//     and the store's totals are atomics; MaxRecords is checked by reserving
//     room in the total before the commit (released if the commit fails);
//   - per-provider counts (c|), which cross shards: a txn that reads one
//     holds provMu until its batch is applied (not until it is durable), so
//     writes serialise their read-modify-write again while
//     MaxRecordsPerProvider is set; recently written providers' counts are
//     kept in memory, so that is mostly a lock, not a read;
//   - the key filter, registered and replaced only with every shard held.
const numShards = 4

// provCacheCap bounds the per-provider counts kept in memory (Store.provCache);
// past it the cache starts again empty.
const provCacheCap = 1 << 16

// shard is one writer's lock and state.
type shard struct {
	idx int
	wmu sync.Mutex

	// Group commit of single-shard AddProviders calls: requests queue in
	// queue (under qmu); the goroutine holding the leader token commits
	// them in groups.
	qmu    sync.Mutex
	queue  []*addRequest
	leader chan struct{}

	// recent holds the provider states of keys this shard wrote lately.
	recent recentKeys
	// nProv, nVal are this shard's part of the record counts, as stored
	// in its count key. Under wmu.
	nProv, nVal int64
}

func newShards() []*shard {
	sh := make([]*shard, numShards)
	for i := range sh {
		sh[i] = &shard{idx: i, leader: make(chan struct{}, 1)}
	}
	return sh
}

// shardOf returns the shard that owns k.
func (s *Store) shardOf(k *record.KadKey) *shard {
	return s.shards[int(k[record.KadKeySize-1])%numShards]
}

// countKeyOf is the key of a shard's part of the record counts: m|n|shard.
func countKeyOf(idx int) []byte { return append(append([]byte(nil), metaCounts...), byte(idx)) }

// encodeCounts is the value of a count key.
func encodeCounts(prov, val int64) []byte {
	var c [16]byte
	binary.BigEndian.PutUint64(c[:], uint64(prov))
	binary.BigEndian.PutUint64(c[8:], uint64(val))
	return c[:]
}

// lockShards locks the shards in shard order (which must be ascending).
func lockShards(shards []*shard) {
	for _, sh := range shards {
		sh.wmu.Lock()
	}
}

func unlockShards(shards []*shard) {
	for _, sh := range shards {
		sh.wmu.Unlock()
	}
}

// shardsOf returns the shards owning the keys, in shard order.
func (s *Store) shardsOf(kks []record.KadKey) []*shard {
	var in [numShards]bool
	for i := range kks {
		in[s.shardOf(&kks[i]).idx] = true
	}
	var out []*shard
	for i, ok := range in {
		if ok {
			out = append(out, s.shards[i])
		}
	}
	return out
}

// reserve adds n records to the total for the MaxRecords check, unless that
// would pass the limit.
func (s *Store) reserve(n int64) (have int64, ok bool) {
	for {
		cur := s.nRecords.Load()
		if limit := s.limits.MaxRecords; limit > 0 && cur+n > limit {
			return cur, false
		}
		if s.nRecords.CompareAndSwap(cur, cur+n) {
			return cur, true
		}
	}
}
