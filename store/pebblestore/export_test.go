package pebblestore

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
)

// Test hooks, compiled into the package for its tests only.

// CorruptProvider overwrites the stored bytes of the provider record (key, p)
// with garbage, as a bug or a bad restore would.
func CorruptProvider(s *Store, key []byte, p peer.ID, garbage []byte) error {
	k := record.KadKeyOf(key)
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
