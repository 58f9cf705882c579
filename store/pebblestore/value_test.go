package pebblestore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/storetest"
)

// The stored form relies on the layout of codec version 1.
func TestCodecVersion(t *testing.T) {
	if record.CodecVersion != codecVersion {
		t.Fatalf("record.CodecVersion is %d; value.go splices version %d", record.CodecVersion, codecVersion)
	}
}

func isCorrupt(err error) bool {
	return errors.Is(err, record.ErrCorrupt) || errors.Is(err, record.ErrVersion)
}

// Stored provider values decode, by both decoders, to the record written, and
// any damaged byte (of the value, or of the provider taken from the key) is
// detected.
func TestProviderValue(t *testing.T) {
	rng := storetest.NewRand(t)
	cache := newAddrCache()
	for i := range 200 {
		key := storetest.RandomKey(rng)
		if i%3 == 0 {
			key = key[:1+rng.IntN(len(key)-1)]
		}
		exp := storetest.Start.Add(time.Duration(rng.Int64N(int64(96 * time.Hour))))
		if i%7 == 0 {
			exp = time.UnixMilli(-rng.Int64N(1 << 40)) // before 1970: negative varint
		}
		r := storetest.NewProviderRecord(rng, key, storetest.RandomPeer(rng), exp)
		v := appendProviderValue([]byte("prefix"), r)[len("prefix"):]
		p := []byte(r.Provider)
		if ms, ok := verifyProvider(p, v); !ok || ms != exp.UnixMilli() {
			t.Fatalf("verifyProvider = %d, %t; want %d, true", ms, ok, exp.UnixMilli())
		}
		got, _, err := decodeProvider(nil, p, v)
		if err != nil || !got.Equal(r) {
			t.Fatalf("decodeProvider = %v, %v; want %v", got, err, r)
		}
		got, err = decodeProviderFast(cache, p, v)
		if err != nil || !got.Equal(r) {
			t.Fatalf("decodeProviderFast = %v, %v; want %v", got, err, r)
		}
		if full := record.MarshalProvider(r); len(v) >= len(full)+headerSize {
			t.Errorf("stored value of %d bytes, codec %d: the provider is stored twice", len(v), len(full))
		}
		for j := range v {
			bad := bytes.Clone(v)
			bad[j] ^= 1 << rng.IntN(8)
			if _, ok := verifyProvider(p, bad); ok {
				t.Errorf("byte %d of %d flipped: checksum holds", j, len(v))
			}
			if _, err := decodeProviderFast(cache, p, bad); !isCorrupt(err) {
				t.Errorf("byte %d of %d flipped: decodeProviderFast error %v", j, len(v), err)
			}
		}
		badP := bytes.Clone(p)
		badP[len(badP)-1] ^= 1
		if _, err := decodeProviderFast(cache, badP, v); !isCorrupt(err) {
			t.Errorf("provider damaged: decodeProviderFast error %v", err)
		}
		for _, n := range []int{0, 3, headerSize, headerSize + 3, len(v) - 1} {
			if _, err := decodeProviderFast(cache, p, v[:n]); !isCorrupt(err) {
				t.Errorf("truncated to %d bytes: error %v", n, err)
			}
		}
	}
}

func TestValueValue(t *testing.T) {
	rng := storetest.NewRand(t)
	for i := range 100 {
		var pub = storetest.RandomPeer(rng)
		if i%2 == 0 {
			pub = ""
		}
		now := storetest.Start
		r := storetest.NewValueRecord(rng, storetest.RandomKey(rng), pub, now, now.Add(time.Duration(rng.Int64N(int64(time.Hour)))))
		v := appendValueValue(nil, r)
		if ms, ok := verifyValue(v); !ok || ms != r.Expires.UnixMilli() {
			t.Fatalf("verifyValue = %d, %t", ms, ok)
		}
		got, _, err := decodeValue(nil, v)
		if err != nil || !got.Equal(r) {
			t.Fatalf("decodeValue = %v, %v; want %v", got, err, r)
		}
		for j := range v {
			bad := bytes.Clone(v)
			bad[j] ^= 1 << rng.IntN(8)
			if _, ok := verifyValue(bad); ok {
				t.Errorf("byte %d flipped: checksum holds", j)
			}
			if _, _, err := decodeValue(nil, bad); !isCorrupt(err) {
				t.Errorf("byte %d flipped: error %v", j, err)
			}
		}
	}
}

// Keys order as the scan order and the time index need.
func TestKeyOrder(t *testing.T) {
	rng := storetest.NewRand(t)
	var prev []byte
	for _, ms := range []int64{-1 << 40, -1, 0, 1, 1 << 40} {
		k := record.KadKeyOf(storetest.RandomKey(rng))
		p := storetest.RandomPeer(rng)
		key := expiryKey(nil, ms, kindProvider, &k)
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			t.Errorf("expiry key of %d does not sort after the previous one", ms)
		}
		e, ok := parseExpiryKey(key)
		if !ok || e.ms != ms || e.kind != kindProvider || !bytes.Equal(e.k[:expiryKadLen], k[:expiryKadLen]) || e.k[expiryKadLen] != 0 {
			t.Errorf("parseExpiryKey(expiryKey(%d)) = %v, %t", ms, e, ok)
		}
		v, ok := parseExpiryKey(expiryKey(nil, ms, kindValue, &k))
		if !ok || v.ms != ms || v.kind != kindValue || v.k != k {
			t.Errorf("parseExpiryKey(expiryKey(%d, value)) = %v, %t", ms, v, ok)
		}
		// The version 1 form converts to this one.
		v1 := append(expiryBound(nil, ms), kindProvider)
		v1 = append(append(v1, k[:]...), p...)
		ms1, k1, ok := v1ExpiryKey(v1)
		if !ok || ms1 != ms || k1 != k {
			t.Errorf("v1ExpiryKey = %d, %v, %t", ms1, k1, ok)
		}
		if _, _, ok := v1ExpiryKey(key); ok {
			t.Errorf("a version 2 entry parsed as version 1")
		}
		prev = key
	}
	// Scan order is (Kademlia key, provider); prefix splitting keeps it.
	a, b := storetest.RandomPeer(rng), storetest.RandomPeer(rng)
	k := record.KadKeyOf(storetest.RandomKey(rng))
	ka, kb := provKey(nil, &k, a), provKey(nil, &k, b)
	posA, posB := store.Position{Key: k, Provider: a}, store.Position{Key: k, Provider: b}
	if bytes.Compare(ka, kb) != posA.Compare(posB) || comparer.Compare(ka, kb) != posA.Compare(posB) {
		t.Errorf("provider keys do not order as positions")
	}
	if n := comparer.Split(ka); n != provPrefixLen {
		t.Errorf("Split of a provider key = %d, want %d", n, provPrefixLen)
	}
	pk, kk2, ok := parsePeerKey(peerKey(nil, a, &k))
	if !ok || string(pk) != string(a) || kk2 != k {
		t.Errorf("parsePeerKey(peerKey) = %x, %v, %t", pk, kk2, ok)
	}
}
