package pebblestore

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
)

// The key spaces, one tag byte each. The package documentation describes the
// layout; the functions below are its only encoders and decoders.
const (
	tagCount  = 'c' // c|provider -> uvarint record count of the provider
	tagExpiry = 'e' // e|expiry|P|kadkey[:4] or e|expiry|V|kadkey -> nil
	tagGuard  = 'g' // layout version 1 only: guards of orphaned index entries (dropped at Open)
	tagMeta   = 'm' // m|name -> metadata
	tagPeer   = 'o' // o|uvarint(len)|provider|kadkey -> nil (indexed peers only)
	tagProv   = 'p' // p|kadkey|provider -> provider record
	tagValue  = 'v' // v|kadkey -> value record
)

// Record kinds in time-index keys.
const (
	kindProvider = 'P'
	kindValue    = 'V'
)

const (
	kk = record.KadKeySize
	// provPrefixLen is the length of p|kadkey, the prefix shared by the
	// records of one key and the unit of the bloom filters.
	provPrefixLen = 1 + kk
	// expiryHead is the length of e|expiry|kind.
	expiryHead = 1 + 8 + 1
)

// Metadata keys.
var (
	metaVersion     = []byte{tagMeta, 'v'}      // layout version, one byte
	metaCounts      = []byte{tagMeta, 'n'}      // provider and value record counts, 2×8 bytes
	metaPerProvider = []byte{tagMeta, 'c', 'p'} // present while c| counts are maintained
	metaIndexed     = []byte{tagMeta, 'i'}      // m|i|provider: the provider's o| index is complete
	metaIndexedAll  = []byte{tagMeta, 'a'}      // every provider's o| index is complete
)

// layoutVersion is written at creation and checked at Open. Version 1 had
// full provider keys in the time index and guard keys; Open converts it.
const layoutVersion = 2

// comparer orders keys bytewise, like pebble's default, and splits provider
// record keys after p|kadkey so that bloom filters are built on that prefix:
// Providers seeks one prefix (SeekPrefixGE) and a missing key is usually
// answered by the filters, without reading a data block. Every other key is
// its own prefix. The split obeys pebble's rules: p|kadkey keys all have the
// same length, so prefixes order keys before suffixes, and a bare prefix
// sorts before the keys that extend it.
var comparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = func(k []byte) int {
		if len(k) > provPrefixLen && k[0] == tagProv {
			return provPrefixLen
		}
		return len(k)
	}
	c.Name = "kadstore.pebblestore.v1"
	return &c
}()

func provKey(dst []byte, k *record.KadKey, p peer.ID) []byte {
	dst = append(dst, tagProv)
	dst = append(dst, k[:]...)
	return append(dst, p...)
}

func provPrefix(dst []byte, k *record.KadKey) []byte {
	dst = append(dst, tagProv)
	return append(dst, k[:]...)
}

// parseProvKey splits a p| key; ok is false for a malformed one.
func parseProvKey(key []byte) (k record.KadKey, p []byte, ok bool) {
	if len(key) <= provPrefixLen || key[0] != tagProv {
		return k, nil, false
	}
	copy(k[:], key[1:provPrefixLen])
	return k, key[provPrefixLen:], true
}

func valueKey(dst []byte, k *record.KadKey) []byte {
	dst = append(dst, tagValue)
	return append(dst, k[:]...)
}

func peerKey(dst []byte, p peer.ID, k *record.KadKey) []byte {
	dst = peerPrefix(dst, p)
	return append(dst, k[:]...)
}

func peerPrefix(dst []byte, p peer.ID) []byte {
	dst = append(dst, tagPeer)
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

// parsePeerKey returns the provider and Kademlia key of an o| key.
func parsePeerKey(key []byte) (p []byte, k record.KadKey, ok bool) {
	if len(key) < 1 || key[0] != tagPeer {
		return nil, k, false
	}
	n, w := binary.Uvarint(key[1:])
	if w <= 0 || uint64(len(key)-1-w) != n+kk {
		return nil, k, false
	}
	p = key[1+w : 1+w+int(n)]
	copy(k[:], key[1+w+int(n):])
	return p, k, true
}

// The time index names a provider record only by the first expiryKadLen
// bytes of its Kademlia key, not by its key and provider ID (70 bytes, most
// of what the index cost on disk and in the memtable). Expire finds the
// records from that (one forward step or seek, see expire.go) and removes
// those whose own expiry is the entry's, so one entry serves every provider
// of a key that expires at the same millisecond, and an entry whose record
// was refreshed or removed is dropped alone. The prefix only has to keep the
// records Expire reads per entry few: 4 bytes leave a second key in about one
// prefix in 400 at 10 M keys. A value record's entry keeps its full Kademlia
// key: v|kadkey is a point key, and value records are few.
const (
	expiryKadLen = 4
	// expiryProvLen and expiryValueLen are the lengths of the two kinds of
	// time-index key.
	expiryProvLen  = expiryHead + expiryKadLen
	expiryValueLen = expiryHead + kk
)

// expiryKey encodes e|expiry|P|kadkey[:4] for a provider record and
// e|expiry|V|kadkey for a value record. The expiry is Unix milliseconds with
// the sign bit flipped, so that big-endian byte order is numeric order for
// negative times too.
func expiryKey(dst []byte, ms int64, kind byte, k *record.KadKey) []byte {
	dst = expiryBound(dst, ms)
	dst = append(dst, kind)
	if kind == kindValue {
		return append(dst, k[:]...)
	}
	return append(dst, k[:expiryKadLen]...)
}

// expiryBound is the smallest time-index key with the given expiry.
func expiryBound(dst []byte, ms int64) []byte {
	dst = append(dst, tagExpiry)
	return binary.BigEndian.AppendUint64(dst, uint64(ms)^(1<<63))
}

// expiryEntry is a decoded time-index key.
type expiryEntry struct {
	ms   int64
	kind byte
	k    record.KadKey // a value's key; a provider entry fills only k[:4]
}

func parseExpiryKey(key []byte) (e expiryEntry, ok bool) {
	if len(key) < expiryHead || key[0] != tagExpiry {
		return e, false
	}
	e.ms = int64(binary.BigEndian.Uint64(key[1:9]) ^ (1 << 63))
	e.kind = key[9]
	switch {
	case e.kind == kindProvider && len(key) == expiryProvLen:
		copy(e.k[:], key[expiryHead:])
		return e, true
	case e.kind == kindValue && len(key) == expiryValueLen:
		copy(e.k[:], key[expiryHead:])
		return e, true
	}
	return e, false
}

// v1ExpiryKey decodes a provider time-index key of layout version 1,
// e|expiry|P|kadkey|provider, which Open converts (see migrateV1).
func v1ExpiryKey(key []byte) (ms int64, k record.KadKey, ok bool) {
	if len(key) <= expiryHead+kk || key[0] != tagExpiry || key[9] != kindProvider {
		return 0, k, false
	}
	ms = int64(binary.BigEndian.Uint64(key[1:9]) ^ (1 << 63))
	copy(k[:], key[expiryHead:expiryHead+kk])
	return ms, k, true
}

func countKey(dst []byte, p []byte) []byte {
	dst = append(dst, tagCount)
	return append(dst, p...)
}

// tagEnd is the smallest key after every key of the tag's space.
func tagEnd(tag byte) []byte { return []byte{tag + 1} }

// prefixEnd returns the smallest key after every key with the prefix, or nil
// if there is none (the prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// successor returns the smallest key after key.
func successor(key []byte) []byte {
	return append(bytes.Clone(key), 0)
}

// addMillis adds without overflowing.
func addMillis(ms, d int64) int64 {
	switch {
	case d > 0 && ms > math.MaxInt64-d:
		return math.MaxInt64
	case d < 0 && ms < math.MinInt64-d:
		return math.MinInt64
	}
	return ms + d
}
