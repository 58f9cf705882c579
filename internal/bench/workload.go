package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/record"
)

// The shape of the workload: in every block of five keys the first has five
// providers and the other four have one, so a block holds nine records.
const (
	keysPerBlock    = 5
	recordsPerBlock = 9
	// WideProviders is how many providers a "wide" key (one in five) has.
	WideProviders = 5
)

// Default expiries, relative to Workload.Base.
const (
	// DefaultTTL is the expiry of ordinary records: the Amino DHT's 48 h.
	DefaultTTL = 48 * time.Hour
	// DefaultShortTTL is the expiry of the records the expire phase removes.
	DefaultShortTTL = time.Hour
	// DefaultShortEvery makes one record in ten short-lived.
	DefaultShortEvery = 10
)

// Workload is a deterministic set of N provider records. Record i is a pure
// function of (Seed, Base, i): nothing is kept in memory, so a benchmark of
// 10 M records costs the generator no more memory than one of 1000.
//
// Keys are 34-byte sha2-256 multihashes whose digest is SHA-256(seed, "k", j)
// for key number j. Keys come in blocks of five: the first key of a block has
// WideProviders providers, the other four have one, so records 9b..9b+4 belong
// to key 5b and record 9b+4+m to key 5b+m (m = 1..4). A last, partial block
// is cut short at N. Each record has its own random peer ID (an identity
// multihash of an Ed25519 public key, as modern libp2p peers have) and two
// addresses on one random IPv4 address: /ip4/…/tcp/4001 and
// /ip4/…/udp/4001/quic-v1. Record i expires at Base+ShortTTL when
// ShortEvery > 0 and i%ShortEvery == ShortEvery-1, otherwise at Base+TTL.
//
// The public-key bytes are pseudo-random, not a point computed from a private
// key: deriving real Ed25519 keys would cost more than the store call being
// measured, and no store validates the key inside a peer ID.
type Workload struct {
	Seed uint64
	N    int64
	// Base is the time expiries count from, truncated to the millisecond.
	Base       time.Time
	TTL        time.Duration
	ShortTTL   time.Duration
	ShortEvery int64
}

// NewWorkload returns the workload of n records with the default expiries,
// counted from base.
func NewWorkload(seed uint64, n int64, base time.Time) Workload {
	return Workload{
		Seed:       seed,
		N:          n,
		Base:       base.Truncate(time.Millisecond),
		TTL:        DefaultTTL,
		ShortTTL:   DefaultShortTTL,
		ShortEvery: DefaultShortEvery,
	}
}

// Keys returns how many distinct keys the N records use.
func (w Workload) Keys() int64 {
	full, rem := w.N/recordsPerBlock, w.N%recordsPerBlock
	k := full * keysPerBlock
	switch {
	case rem == 0:
	case rem <= WideProviders:
		k++
	default:
		k += 1 + rem - WideProviders
	}
	return k
}

// KeyOf returns the key number of record i.
func (w Workload) KeyOf(i int64) int64 {
	b, r := i/recordsPerBlock, i%recordsPerBlock
	if r < WideProviders {
		return b * keysPerBlock
	}
	return b*keysPerBlock + r - (WideProviders - 1)
}

// RecordsOf returns the index of the first record of key j and how many
// consecutive records the key has.
func (w Workload) RecordsOf(j int64) (first, count int64) {
	b, m := j/keysPerBlock, j%keysPerBlock
	if m == 0 {
		first, count = b*recordsPerBlock, WideProviders
	} else {
		first, count = b*recordsPerBlock+WideProviders-1+m, 1
	}
	count = max(0, min(count, w.N-first))
	return first, count
}

// Short reports whether record i is one of the short-lived records.
func (w Workload) Short(i int64) bool {
	return w.ShortEvery > 0 && i%w.ShortEvery == w.ShortEvery-1
}

// ShortRecords returns how many of the N records are short-lived.
func (w Workload) ShortRecords() int64 {
	if w.ShortEvery <= 0 {
		return 0
	}
	return w.N / w.ShortEvery
}

// Key returns key number j, a sha2-256 multihash.
func (w Workload) Key(j int64) []byte { return w.key('k', j) }

// MissingKey returns a key of the same shape that no record of the workload
// has (different domain in the digest input), for lookups of absent keys.
func (w Workload) MissingKey(j int64) []byte { return w.key('m', j) }

func (w Workload) key(domain byte, j int64) []byte {
	var in [17]byte
	binary.BigEndian.PutUint64(in[:8], w.Seed)
	in[8] = domain
	binary.BigEndian.PutUint64(in[9:], uint64(j))
	d := sha256.Sum256(in[:])
	out := make([]byte, 2+sha256.Size)
	out[0], out[1] = 0x12, sha256.Size // sha2-256, 32 bytes
	copy(out[2:], d[:])
	return out
}

// Record returns record i.
func (w Workload) Record(i int64) record.ProviderRecord {
	return w.record(i, w.Key(w.KeyOf(i)))
}

// Fill sets dst[k] to record start+k for every k, sharing each key's bytes
// between the records of that key that fall in dst. It returns dst.
func (w Workload) Fill(dst []record.ProviderRecord, start int64) []record.ProviderRecord {
	var key []byte
	last := int64(-1)
	for k := range dst {
		i := start + int64(k)
		if j := w.KeyOf(i); j != last {
			key, last = w.Key(j), j
		}
		dst[k] = w.record(i, key)
	}
	return dst
}

// Ed25519 public keys in a peer ID: identity multihash (0x00) of 36 bytes,
// holding the protobuf PublicKey{Type: Ed25519 (1), Data: 32 bytes}.
var peerIDPrefix = [...]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// PeerIDSize is the size in bytes of every peer ID the workload generates.
const PeerIDSize = len(peerIDPrefix) + 32

func (w Workload) record(i int64, key []byte) record.ProviderRecord {
	// splitmix64 keyed by (seed, i): cheap, and random enough for identifiers
	// that only have to be distinct and evenly spread.
	s := w.Seed ^ (uint64(i)+1)*0x9E3779B97F4A7C15
	var id [PeerIDSize]byte
	copy(id[:], peerIDPrefix[:])
	for k := len(peerIDPrefix); k < PeerIDSize; k += 8 {
		binary.LittleEndian.PutUint64(id[k:], splitmix64(&s))
	}
	ip := uint32(splitmix64(&s))

	exp := w.Base.Add(w.TTL)
	if w.Short(i) {
		exp = w.Base.Add(w.ShortTTL)
	}
	return record.ProviderRecord{
		Key:      key,
		Provider: peer.ID(id[:]),
		Addrs:    addrs(ip),
		Expires:  exp,
	}
}

func splitmix64(s *uint64) uint64 {
	*s += 0x9E3779B97F4A7C15
	z := *s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// The protocol components after the IP address are the same in every
// generated address, so they are parsed once and shared: a Component is
// immutable. Only the ip4 component is built per record, which keeps the
// generator's cost well below the store calls it feeds.
var (
	tcp4001 = mustComponent("tcp", "4001")
	udp4001 = mustComponent("udp", "4001")
	quicV1  = mustComponent("quic-v1", "")
)

func mustComponent(proto, value string) ma.Component {
	c, err := ma.NewComponent(proto, value)
	if err != nil {
		panic("bench: " + err.Error())
	}
	return *c
}

// addrs returns /ip4/ip/tcp/4001 and /ip4/ip/udp/4001/quic-v1.
func addrs(ip uint32) []ma.Multiaddr {
	var b [1 + 4]byte // ip4 (code 0x04), then the address
	b[0] = 0x04
	binary.BigEndian.PutUint32(b[1:], ip)
	var c ma.Component
	if err := c.UnmarshalBinary(b[:]); err != nil {
		panic("bench: bad generated ip4 component: " + err.Error())
	}
	cs := []ma.Component{c, tcp4001, c, udp4001, quicV1} // one allocation for both
	return []ma.Multiaddr{cs[0:2:2], cs[2:5:5]}
}
