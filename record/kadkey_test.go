package record_test

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	kb "github.com/libp2p/go-libp2p-kbucket"

	"github.com/kadstore/kadstore/record"
)

func TestKadKeyMatchesKbucket(t *testing.T) {
	key := []byte("/ipns/some-name")
	got := record.KadKeyOf(key)
	want := kb.ConvertKey(string(key))
	if string(got[:]) != string(want) {
		t.Fatalf("KadKeyOf = %x, kbucket ConvertKey = %x", got, want)
	}
	if got != sha256.Sum256(key) {
		t.Fatal("not SHA-256")
	}
}

func TestCommonPrefixLen(t *testing.T) {
	var a, b record.KadKey
	if record.CommonPrefixLen(a, b) != 256 {
		t.Fatal("equal keys")
	}
	b[0] = 0x80
	if got := record.CommonPrefixLen(a, b); got != 0 {
		t.Fatalf("got %d want 0", got)
	}
	b[0], b[3] = 0, 0x10
	if got := record.CommonPrefixLen(a, b); got != 27 {
		t.Fatalf("got %d want 27", got)
	}
}

func TestRegionContainsMatchesRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randKey := func() (k record.KadKey) {
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		return k
	}
	less := func(a, b record.KadKey) bool { return string(a[:]) < string(b[:]) }
	for _, bits := range []int{0, 1, 3, 7, 8, 9, 15, 16, 31, 255, 256} {
		r := record.RegionOf(randKey(), bits)
		start := r.Start()
		end, bounded := r.End()
		for range 200 {
			k := randKey()
			if rng.IntN(2) == 0 { // keys inside the region too
				copy(k[:], start[:bits/8])
				if bits%8 != 0 {
					mask := byte(0xFF << (8 - bits%8))
					k[bits/8] = start[bits/8]&mask | k[bits/8]&^mask
				}
			}
			inRange := !less(k, start) && (!bounded || less(k, end))
			if r.Contains(k) != inRange {
				t.Fatalf("bits %d key %v: Contains=%v range says %v", bits, k, r.Contains(k), inRange)
			}
		}
	}
}

func TestRegionNextCoversKeyspace(t *testing.T) {
	r := record.Region{Bits: 3}
	var got []string
	for {
		got = append(got, r.String())
		n, ok := r.Next()
		if !ok {
			break
		}
		r = n
	}
	want := []string{"000/3", "001/3", "010/3", "011/3", "100/3", "101/3", "110/3", "111/3"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	if (record.Region{}).String() != "*" || !(record.Region{}).Contains(record.KadKey{0xFF}) {
		t.Fatal("zero region is not the whole keyspace")
	}
}
