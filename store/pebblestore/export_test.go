package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
)

// Test hooks, compiled into the package for its tests only.

// CorruptProvider overwrites the stored bytes of the provider record (key, p)
// with garbage, as a bug or a bad restore would.
func CorruptProvider(s *Store, key []byte, p peer.ID, garbage []byte) error {
	k := record.KadKeyOf(key)
	sh := s.shardOf(&k)
	sh.wmu.Lock()
	defer sh.wmu.Unlock()
	sh.recent.forget(&k)
	return s.db.Set(provKey(nil, &k, p), garbage, pebble.Sync)
}

// CorruptValue overwrites the stored bytes of the value record of key.
func CorruptValue(s *Store, key []byte, garbage []byte) error {
	k := record.KadKeyOf(key)
	return s.db.Set(valueKey(nil, &k), garbage, pebble.Sync)
}

// ExpireVisited returns how many time-index entries Expire has read.
func ExpireVisited(s *Store) int64 { return s.expireVisited.Load() }

// KeysIn counts the keys of the space with the given tag byte ('p', 'v', 'e',
// 'o', 'c', 'g').
func KeysIn(s *Store, tag byte) int64 {
	n, err := s.countKeys([]byte{tag}, tagEnd(tag))
	if err != nil {
		panic(err)
	}
	return n
}

// ChildMain, when set by an external test file, runs before the tests: if it
// reports ok, the test binary was started as a child process of a test and
// exits with its code instead of running the tests.
var ChildMain func() (code int, ok bool)

// ReadsSaved returns how many AddProviders reads the key filter and the
// recent keys saved.
func ReadsSaved(s *Store) (filter, recent int64) { return s.filterSkips.Load(), s.recentHits.Load() }

// WaitFilterBuilds waits until no key filter is being built. The caller must
// not write meanwhile (a write may start a build).
func WaitFilterBuilds(s *Store) { s.bg.Wait() }

// FilterReady reports whether a complete key filter is in use.
func FilterReady(s *Store) bool {
	lockShards(s.shards)
	defer unlockShards(s.shards)
	return s.filter != nil && s.filter.ready.Load()
}

// ForgetRecent empties the recent keys, so that the next writes read.
func ForgetRecent(s *Store) {
	lockShards(s.shards)
	defer unlockShards(s.shards)
	for _, sh := range s.shards {
		sh.recent.clear()
	}
}

// SetFilterMinKeys sets the smallest key filter size, for tests of its
// growth, and returns a function that restores it.
func SetFilterMinKeys(n int64) (restore func()) {
	old := filterMinKeys
	filterMinKeys = n
	return func() { filterMinKeys = old }
}

// FilterKeys returns how many keys the key filter in use was sized for (0
// without one).
func FilterKeys(s *Store) int64 {
	lockShards(s.shards)
	defer unlockShards(s.shards)
	if s.filter == nil {
		return 0
	}
	return s.filter.keys
}

// DowngradeToV1 rewrites the store's provider time index in the form of
// layout version 1 (full Kademlia key and provider ID), adds a version 1
// guard key, and sets the layout version to 1: what a store written by the
// previous release looks like.
func DowngradeToV1(s *Store) error {
	b := s.db.NewBatch()
	defer b.Close()
	b.DeleteRange([]byte{tagExpiry}, tagEnd(tagExpiry), nil)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagProv}, UpperBound: tagEnd(tagProv)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, p, _ := parseProvKey(it.Key())
		ms, _ := verifyProvider(p, it.Value())
		key := append(expiryBound(nil, ms), kindProvider)
		key = append(append(key, k[:]...), p...)
		b.Set(key, nil, nil)
	}
	vit, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagValue}, UpperBound: tagEnd(tagValue)})
	if err != nil {
		return err
	}
	defer vit.Close()
	for vit.First(); vit.Valid(); vit.Next() {
		var k record.KadKey
		copy(k[:], vit.Key()[1:])
		ms, _ := verifyValue(vit.Value())
		b.Set(expiryKey(nil, ms, kindValue, &k), nil, nil)
	}
	b.Set([]byte{tagGuard, kindProvider, 1, 2, 3}, []byte{1}, nil)
	b.Set(metaVersion, []byte{1}, nil)
	return b.Commit(pebble.Sync)
}

func (s *Store) countKeys(lower, upper []byte) (int64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n, it.Error()
}

// CreateAtFormat creates an empty store in dir at pebble's format f, as an
// earlier kadstore (at pebble.FormatNewest) did.
func CreateAtFormat(dir string, f pebble.FormatMajorVersion) error {
	o := Options{}
	o.EnsureDefaults()
	po := o.pebbleOptions(nil, newFaults(o.Logger))
	po.FormatMajorVersion = f
	db, err := pebble.Open(dir, po)
	if err != nil {
		return err
	}
	if err := db.Set(metaVersion, []byte{layoutVersion}, pebble.Sync); err != nil {
		return err
	}
	return db.Close()
}

// StartKeyFilter starts the key filter's build as a store's first commit
// does.
func StartKeyFilter(s *Store) {
	sh := s.shards[0]
	sh.wmu.Lock()
	s.maybeGrowFilter()
	sh.wmu.Unlock()
}

// SetSpaceRecheck sets how often a refused write reads the free space again
// (100 ms by default), so that tests need not wait.
func SetSpaceRecheck(s *Store, d time.Duration) { s.space.recheck = d }

// CompactAll compacts the whole key space, as pebble's background
// compactions would, returning their error.
func CompactAll(s *Store) error {
	return s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false)
}

// DeleteFirst deletes the first key with the tag (a time-index entry: 'e';
// a peer index entry: 'o'), as a bug would.
func DeleteFirst(s *Store, tag byte) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: tagEnd(tag)})
	if err != nil {
		return err
	}
	defer it.Close()
	if !it.First() {
		return fmt.Errorf("no key with tag %c", tag)
	}
	return s.db.Delete(it.Key(), pebble.Sync)
}

// SkewCounts adds one to the stored provider record count of shard 0.
func SkewCounts(s *Store) error {
	v, err := s.get(countKeyOf(0))
	if err != nil || len(v) < 16 {
		return fmt.Errorf("counts of shard 0: %x %v", v, err)
	}
	n := int64(binary.BigEndian.Uint64(v))
	return s.db.Set(countKeyOf(0), encodeCounts(n+1, int64(binary.BigEndian.Uint64(v[8:]))), pebble.Sync)
}
