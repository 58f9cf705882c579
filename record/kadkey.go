package record

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/bits"
)

// KadKeySize is the size of a Kademlia key in bytes.
const KadKeySize = sha256.Size

// KadKey is a position in the Kademlia keyspace: the SHA-256 digest of a record
// key (or of a peer ID's bytes), as go-libp2p-kbucket's ConvertKey computes it.
type KadKey [KadKeySize]byte

// KadKeyOf returns the Kademlia key of a record key.
func KadKeyOf(key []byte) KadKey { return sha256.Sum256(key) }

// String returns the key in hex.
func (k KadKey) String() string { return hex.EncodeToString(k[:]) }

// Bit returns bit i of k, counting from the most significant bit of byte 0.
func (k KadKey) Bit(i int) int { return int(k[i/8]>>(7-uint(i%8))) & 1 }

// CommonPrefixLen returns how many leading bits a and b share.
func CommonPrefixLen(a, b KadKey) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return KadKeySize * 8
}

// Region is the part of the keyspace whose keys begin with the first Bits bits of
// Prefix. The zero Region is the whole keyspace. Bits beyond the prefix length in
// Prefix are ignored.
type Region struct {
	Prefix KadKey
	Bits   int
}

// RegionOf returns the region of the given prefix length that contains k.
func RegionOf(k KadKey, bits int) Region {
	r := Region{Prefix: k, Bits: bits}
	return r.normalized()
}

// Valid reports whether the prefix length is within the keyspace.
func (r Region) Valid() bool { return r.Bits >= 0 && r.Bits <= KadKeySize*8 }

// IsAll reports whether r is the whole keyspace.
func (r Region) IsAll() bool { return r.Bits == 0 }

func (r Region) normalized() Region {
	if !r.Valid() {
		return r
	}
	full := r.Bits / 8
	if full < KadKeySize {
		if rem := r.Bits % 8; rem != 0 {
			r.Prefix[full] &= byte(0xFF << (8 - rem))
			full++
		}
		for i := full; i < KadKeySize; i++ {
			r.Prefix[i] = 0
		}
	}
	return r
}

// Contains reports whether k lies in r.
func (r Region) Contains(k KadKey) bool {
	if r.Bits <= 0 {
		return true
	}
	return CommonPrefixLen(r.normalized().Prefix, k) >= r.Bits
}

// Start returns the smallest key of r.
func (r Region) Start() KadKey { return r.normalized().Prefix }

// End returns the first key after r and true, or false when r extends to the end
// of the keyspace (every key after Start is in r).
func (r Region) End() (KadKey, bool) {
	if r.Bits <= 0 {
		return KadKey{}, false
	}
	k := r.normalized().Prefix
	// Add 1 at bit position Bits-1, carrying towards byte 0.
	i := (r.Bits - 1) / 8
	inc := byte(1) << (7 - uint((r.Bits-1)%8))
	for {
		sum := uint16(k[i]) + uint16(inc)
		k[i] = byte(sum)
		if sum <= 0xFF {
			return k, true
		}
		if i == 0 {
			return KadKey{}, false
		}
		i--
		inc = 1
	}
}

// Next returns the region of the same length that follows r, and false when r
// is the last one.
func (r Region) Next() (Region, bool) {
	end, ok := r.End()
	if !ok {
		return Region{}, false
	}
	return Region{Prefix: end, Bits: r.Bits}, true
}

// String returns the prefix as a bit string, e.g. "0110/4", or "*" for the whole
// keyspace.
func (r Region) String() string {
	if r.Bits <= 0 {
		return "*"
	}
	b := make([]byte, 0, r.Bits)
	for i := 0; i < r.Bits && i < KadKeySize*8; i++ {
		b = append(b, byte('0'+r.Prefix.Bit(i)))
	}
	return fmt.Sprintf("%s/%d", b, r.Bits)
}
