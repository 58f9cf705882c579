package pgstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// This file turns records into column values and back. Decoding checks what
// the database cannot: that provider and publisher bytes are peer IDs and that
// addrs holds multiaddrs. A row that fails is corrupt (someone edited the
// table, or a bug wrote it); it is reported and skipped, never served.

// millis truncates t to the codec's resolution and drops its monotonic
// reading, so what is stored is what a decoded record carries.
func millis(t time.Time) time.Time { return record.TimeFromMillis(t.UnixMilli()) }

// encodeAddrs writes each address as a uvarint length and its bytes.
func encodeAddrs(addrs []ma.Multiaddr) []byte {
	n := 0
	for _, a := range addrs {
		n += binary.MaxVarintLen64 + len(a.Bytes())
	}
	b := make([]byte, 0, n)
	for _, a := range addrs {
		ab := a.Bytes()
		b = binary.AppendUvarint(b, uint64(len(ab)))
		b = append(b, ab...)
	}
	return b
}

func decodeAddrs(b []byte) ([]ma.Multiaddr, error) {
	var addrs []ma.Multiaddr
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: bad address length", store.ErrCorrupt)
		}
		a, err := ma.NewMultiaddrBytes(b[k : k+int(n)])
		if err != nil {
			return nil, fmt.Errorf("%w: address: %v", store.ErrCorrupt, err)
		}
		addrs = append(addrs, a)
		b = b[k+int(n):]
	}
	return addrs, nil
}

func decodePeer(b []byte, what string) (peer.ID, error) {
	id, err := peer.IDFromBytes(b)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", store.ErrCorrupt, what, err)
	}
	return id, nil
}

// providerRow is a provider record as read from provider_records.
type providerRow struct {
	kadkey, provider, key, addrs []byte
	expires                      time.Time
}

func (r *providerRow) decode() (store.ProviderRecord, error) {
	var rec store.ProviderRecord
	p, err := decodePeer(r.provider, "provider")
	if err != nil {
		return rec, err
	}
	addrs, err := decodeAddrs(r.addrs)
	if err != nil {
		return rec, err
	}
	if len(r.kadkey) != record.KadKeySize || record.KadKeyOf(r.key) != record.KadKey(r.kadkey) {
		return rec, fmt.Errorf("%w: kadkey does not match key", store.ErrCorrupt)
	}
	return store.ProviderRecord{Key: r.key, Provider: p, Addrs: addrs, Expires: millis(r.expires)}, nil
}

// valueRow is a value record as read from value_records.
type valueRow struct {
	kadkey, key, value, publisher []byte
	received, expires             time.Time
}

func (r *valueRow) decode() (store.ValueRecord, error) {
	rec := store.ValueRecord{Key: r.key, Value: r.value, Received: millis(r.received), Expires: millis(r.expires)}
	if len(r.publisher) > 0 {
		p, err := decodePeer(r.publisher, "publisher")
		if err != nil {
			return store.ValueRecord{}, err
		}
		rec.Publisher = p
	}
	if len(r.kadkey) != record.KadKeySize || record.KadKeyOf(r.key) != record.KadKey(r.kadkey) {
		return store.ValueRecord{}, fmt.Errorf("%w: kadkey does not match key", store.ErrCorrupt)
	}
	if rec.Value == nil {
		rec.Value = []byte{}
	}
	return rec, nil
}
