package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Codec errors. Decoders wrap them with detail; match with errors.Is.
var (
	// ErrCorrupt is returned for truncated or damaged bytes, or bytes that do
	// not describe a valid record.
	ErrCorrupt = errors.New("record: corrupt encoding")
	// ErrVersion is returned for bytes written by an unknown codec version.
	ErrVersion = errors.New("record: unknown codec version")
)

// CodecVersion is the version byte written at the start of every encoding.
const CodecVersion = 1

const (
	kindProvider = 'P'
	kindValue    = 'V'
	crcSize      = 4
	// maxFieldLen bounds any single length-prefixed field, so corrupt lengths
	// are rejected before any allocation.
	maxFieldLen = 16 << 20
	maxAddrs    = 1 << 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendProvider appends the encoding of r to dst. It does not validate r.
func AppendProvider(dst []byte, r ProviderRecord) []byte {
	start := len(dst)
	dst = append(dst, CodecVersion, kindProvider)
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, []byte(r.Provider))
	dst = binary.AppendUvarint(dst, uint64(len(r.Addrs)))
	for _, a := range r.Addrs {
		dst = appendBytes(dst, a.Bytes())
	}
	dst = binary.AppendVarint(dst, r.Expires.UnixMilli())
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// MarshalProvider returns the encoding of r.
func MarshalProvider(r ProviderRecord) []byte { return AppendProvider(nil, r) }

// AppendValue appends the encoding of r to dst. It does not validate r.
func AppendValue(dst []byte, r ValueRecord) []byte {
	start := len(dst)
	dst = append(dst, CodecVersion, kindValue)
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = appendBytes(dst, []byte(r.Publisher))
	dst = binary.AppendVarint(dst, r.Received.UnixMilli())
	dst = binary.AppendVarint(dst, r.Expires.UnixMilli())
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// MarshalValue returns the encoding of r.
func MarshalValue(r ValueRecord) []byte { return AppendValue(nil, r) }

// UnmarshalProvider decodes a provider record. The result does not alias b.
func UnmarshalProvider(b []byte) (ProviderRecord, error) {
	d, err := open(b, kindProvider)
	if err != nil {
		return ProviderRecord{}, err
	}
	var r ProviderRecord
	r.Key = d.bytes("key")
	if p := d.bytes("provider"); d.err == nil {
		id, err := peer.IDFromBytes(p)
		if err != nil {
			return ProviderRecord{}, fmt.Errorf("%w: provider: %v", ErrCorrupt, err)
		}
		r.Provider = id
	}
	n := d.uvarint("address count")
	if d.err == nil && n > maxAddrs {
		d.fail("address count")
	}
	if d.err == nil && n > 0 {
		r.Addrs = make([]ma.Multiaddr, 0, n)
		for range n {
			ab := d.bytes("address")
			if d.err != nil {
				break
			}
			a, err := ma.NewMultiaddrBytes(ab)
			if err != nil {
				return ProviderRecord{}, fmt.Errorf("%w: address: %v", ErrCorrupt, err)
			}
			r.Addrs = append(r.Addrs, a)
		}
	}
	r.Expires = TimeFromMillis(d.varint("expires"))
	if err := d.finish(); err != nil {
		return ProviderRecord{}, err
	}
	return r, nil
}

// UnmarshalValue decodes a value record. The result does not alias b.
func UnmarshalValue(b []byte) (ValueRecord, error) {
	d, err := open(b, kindValue)
	if err != nil {
		return ValueRecord{}, err
	}
	var r ValueRecord
	r.Key = d.bytes("key")
	r.Value = d.bytes("value")
	if p := d.bytes("publisher"); d.err == nil && len(p) > 0 {
		id, err := peer.IDFromBytes(p)
		if err != nil {
			return ValueRecord{}, fmt.Errorf("%w: publisher: %v", ErrCorrupt, err)
		}
		r.Publisher = id
	}
	r.Received = TimeFromMillis(d.varint("received"))
	r.Expires = TimeFromMillis(d.varint("expires"))
	if err := d.finish(); err != nil {
		return ValueRecord{}, err
	}
	return r, nil
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

type decoder struct {
	b   []byte
	err error
}

func open(b []byte, kind byte) (*decoder, error) {
	if len(b) < 2+crcSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	if b[0] != CodecVersion {
		return nil, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	body, sum := b[:len(b)-crcSize], binary.BigEndian.Uint32(b[len(b)-crcSize:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if b[1] != kind {
		return nil, fmt.Errorf("%w: record kind %q, want %q", ErrCorrupt, b[1], kind)
	}
	return &decoder{b: body[2:]}, nil
}

func (d *decoder) fail(field string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, field)
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > maxFieldLen || n > uint64(len(d.b)) {
		d.fail(field)
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b[:n])
	d.b = d.b[n:]
	return out
}

func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return nil
}
