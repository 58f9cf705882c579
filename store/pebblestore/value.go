package pebblestore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/record"
)

// Stored values are the record codec's encoding (record.AppendProvider,
// record.AppendValue) with two changes that keep its checksum meaningful:
//
//   - the expiry moves to a fixed 8-byte big-endian header (Unix
//     milliseconds), so a write can find a record's time-index entry, and a
//     reader its liveness, without decoding the record;
//   - a provider record drops its provider field, which its pebble key
//     already holds (that saves about 40 bytes a record).
//
// Decoding splices both back and hands the result to the codec, whose CRC-32C
// then covers the header and the provider taken from the key as well: damage
// to any of them is reported as corruption.
//
// The codec layout relied on is version 1: version, kind, uvarint-prefixed
// key, [provider record: uvarint-prefixed provider, uvarint address count and
// uvarint-prefixed addresses | value record: value, publisher, varint
// received], varint expiry, 4-byte CRC-32C of everything before it.
const (
	codecVersion = 1
	headerSize   = 8
	crcSize      = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errShort reports a stored value too short to hold a record.
var errShort = fmt.Errorf("%w: stored value too short", record.ErrCorrupt)

// appendProviderValue appends the stored form of r to dst.
func appendProviderValue(dst []byte, r record.ProviderRecord) []byte {
	ms := r.Expires.UnixMilli()
	dst = binary.BigEndian.AppendUint64(dst, uint64(ms))
	start := len(dst)
	dst = record.AppendProvider(dst, r)
	enc := dst[start:]
	// enc: ver kind klen key plen provider ... expiry crc
	klen, n := binary.Uvarint(enc[2:])
	provAt := 2 + n + int(klen)
	plen, n := binary.Uvarint(enc[provAt:])
	provEnd := provAt + n + int(plen)
	expAt := len(enc) - crcSize - varintLen(ms)
	m := copy(enc[provAt:], enc[provEnd:expAt])
	m += provAt
	m += copy(enc[m:], enc[len(enc)-crcSize:])
	return dst[:start+m]
}

// appendValueValue appends the stored form of r to dst.
func appendValueValue(dst []byte, r record.ValueRecord) []byte {
	ms := r.Expires.UnixMilli()
	dst = binary.BigEndian.AppendUint64(dst, uint64(ms))
	start := len(dst)
	dst = record.AppendValue(dst, r)
	enc := dst[start:]
	expAt := len(enc) - crcSize - varintLen(ms)
	m := expAt + copy(enc[expAt:], enc[len(enc)-crcSize:])
	return dst[:start+m]
}

// splitProvider locates the provider's place in a stored provider value:
// body is the codec bytes without expiry and CRC, at is where the provider
// field goes.
func splitProvider(v []byte) (ms int64, body []byte, at int, sum []byte, err error) {
	if len(v) < headerSize+2+1+crcSize {
		return 0, nil, 0, nil, errShort
	}
	ms = int64(binary.BigEndian.Uint64(v))
	body, sum = v[headerSize:len(v)-crcSize], v[len(v)-crcSize:]
	klen, n := binary.Uvarint(body[2:])
	if n <= 0 || klen > uint64(len(body)) || 2+n+int(klen) > len(body) {
		return 0, nil, 0, nil, fmt.Errorf("%w: bad key length", record.ErrCorrupt)
	}
	return ms, body, 2 + n + int(klen), sum, nil
}

// verifyProvider checks the checksum of a stored provider record of provider
// p without decoding it, and returns its expiry.
func verifyProvider(p, v []byte) (int64, bool) {
	ms, body, at, sum, err := splitProvider(v)
	if err != nil {
		return 0, false
	}
	var tmp [2 * binary.MaxVarintLen64]byte
	c := crc32.Update(0, castagnoli, body[:at])
	c = crc32.Update(c, castagnoli, binary.AppendUvarint(tmp[:0], uint64(len(p))))
	c = crc32.Update(c, castagnoli, p)
	c = crc32.Update(c, castagnoli, body[at:])
	c = crc32.Update(c, castagnoli, binary.AppendVarint(tmp[:0], ms))
	return ms, c == binary.BigEndian.Uint32(sum)
}

// decodeProvider decodes the stored provider record of provider p; scratch
// is reused and returned.
func decodeProvider(scratch, p, v []byte) (record.ProviderRecord, []byte, error) {
	ms, body, at, sum, err := splitProvider(v)
	if err != nil {
		return record.ProviderRecord{}, scratch, err
	}
	b := append(scratch[:0], body[:at]...)
	b = binary.AppendUvarint(b, uint64(len(p)))
	b = append(b, p...)
	b = append(b, body[at:]...)
	b = binary.AppendVarint(b, ms)
	b = append(b, sum...)
	r, err := record.UnmarshalProvider(b)
	return r, b, err
}

// decodeProviderFast decodes the stored provider record of provider p like
// decodeProvider, but without rebuilding the codec bytes, and takes the
// addresses from the cache: a scan decodes millions of records. It checks
// the same checksum; for a value that fails any check it falls back to
// decodeProvider, whose error says what is wrong.
func decodeProviderFast(cache *addrCache, p, v []byte) (record.ProviderRecord, error) {
	ms, ok := verifyProvider(p, v)
	if !ok {
		r, _, err := decodeProvider(nil, p, v)
		return r, err
	}
	b := v[headerSize : len(v)-crcSize]
	if b[0] != codecVersion || b[1] != 'P' {
		r, _, err := decodeProvider(nil, p, v)
		return r, err
	}
	b = b[2:]
	var r record.ProviderRecord
	klen, n := binary.Uvarint(b) // bounds checked by verifyProvider
	r.Key = append([]byte(nil), b[n:n+int(klen)]...)
	b = b[n+int(klen):]
	naddrs, n := binary.Uvarint(b)
	if n <= 0 || naddrs > uint64(len(b)) {
		r, _, err := decodeProvider(nil, p, v)
		return r, err
	}
	b = b[n:]
	if naddrs > 0 {
		r.Addrs = make([]ma.Multiaddr, 0, naddrs)
	}
	for range naddrs {
		alen, n := binary.Uvarint(b)
		if n <= 0 || alen > uint64(len(b)-n) {
			r, _, err := decodeProvider(nil, p, v)
			return r, err
		}
		a, err := cache.get(b[n : n+int(alen)])
		if err != nil {
			return record.ProviderRecord{}, fmt.Errorf("%w: address: %v", record.ErrCorrupt, err)
		}
		r.Addrs = append(r.Addrs, a)
		b = b[n+int(alen):]
	}
	if len(b) != 0 {
		r, _, err := decodeProvider(nil, p, v)
		return r, err
	}
	// The provider is the key's, which the store wrote after checking it,
	// and the checksum covers: it needs no second validation.
	r.Provider = peer.ID(p)
	r.Expires = record.TimeFromMillis(ms)
	return r, nil
}

// verifyValue checks the checksum of a stored value record and returns its
// expiry.
func verifyValue(v []byte) (int64, bool) {
	if len(v) < headerSize+2+crcSize {
		return 0, false
	}
	ms := int64(binary.BigEndian.Uint64(v))
	body, sum := v[headerSize:len(v)-crcSize], v[len(v)-crcSize:]
	var tmp [binary.MaxVarintLen64]byte
	c := crc32.Update(0, castagnoli, body)
	c = crc32.Update(c, castagnoli, binary.AppendVarint(tmp[:0], ms))
	return ms, c == binary.BigEndian.Uint32(sum)
}

// decodeValue decodes a stored value record.
func decodeValue(scratch, v []byte) (record.ValueRecord, []byte, error) {
	if len(v) < headerSize+2+crcSize {
		return record.ValueRecord{}, scratch, errShort
	}
	ms := int64(binary.BigEndian.Uint64(v))
	b := append(scratch[:0], v[headerSize:len(v)-crcSize]...)
	b = binary.AppendVarint(b, ms)
	b = append(b, v[len(v)-crcSize:]...)
	r, err := record.UnmarshalValue(b)
	return r, b, err
}

func varintLen(v int64) int {
	var tmp [binary.MaxVarintLen64]byte
	return len(binary.AppendVarint(tmp[:0], v))
}
