package record

import (
	"bytes"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ProviderRecord announces that Provider can serve the content named by Key.
type ProviderRecord struct {
	// Key is the record key: for content, the multihash bytes.
	Key []byte
	// Provider is the peer that provides the content.
	Provider peer.ID
	// Addrs are the provider's addresses, persisted with the record so that a
	// node can answer with them after a restart.
	Addrs []ma.Multiaddr
	// Expires is the wall-clock time after which the record is no longer served.
	Expires time.Time
}

// ValueRecord is a key/value pair stored for the DHT (PUT_VALUE/GET_VALUE).
type ValueRecord struct {
	Key   []byte
	Value []byte
	// Publisher is the peer that published the record; it may be empty.
	Publisher peer.ID
	// Received is when this node received the record.
	Received time.Time
	// Expires is the wall-clock time after which the record is no longer served.
	Expires time.Time
}

// KadKey returns the Kademlia key of the record.
func (r ProviderRecord) KadKey() KadKey { return KadKeyOf(r.Key) }

// KadKey returns the Kademlia key of the record.
func (r ValueRecord) KadKey() KadKey { return KadKeyOf(r.Key) }

// Equal reports whether two provider records are identical, expiry compared to
// the millisecond (the codec's resolution).
func (r ProviderRecord) Equal(o ProviderRecord) bool {
	return bytes.Equal(r.Key, o.Key) && r.Provider == o.Provider &&
		r.Expires.UnixMilli() == o.Expires.UnixMilli() &&
		slices.EqualFunc(r.Addrs, o.Addrs, func(a, b ma.Multiaddr) bool { return a.Equal(b) })
}

// Equal reports whether two value records are identical, times compared to the
// millisecond (the codec's resolution).
func (r ValueRecord) Equal(o ValueRecord) bool {
	return bytes.Equal(r.Key, o.Key) && bytes.Equal(r.Value, o.Value) &&
		r.Publisher == o.Publisher &&
		r.Received.UnixMilli() == o.Received.UnixMilli() &&
		r.Expires.UnixMilli() == o.Expires.UnixMilli()
}

// Clone returns a deep copy of r, so the caller may keep it while the original's
// slices are reused.
func (r ProviderRecord) Clone() ProviderRecord {
	r.Key = bytes.Clone(r.Key)
	r.Addrs = slices.Clone(r.Addrs)
	return r
}

// Clone returns a deep copy of r.
func (r ValueRecord) Clone() ValueRecord {
	r.Key = bytes.Clone(r.Key)
	r.Value = bytes.Clone(r.Value)
	return r
}

// TimeFromMillis turns Unix milliseconds into a time.Time without a monotonic
// reading, the form every decoded record carries.
func TimeFromMillis(ms int64) time.Time { return time.UnixMilli(ms) }
