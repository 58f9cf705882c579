package pebblestore

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/kadstore/kadstore/record"
)

// TestLookupFilterLeavesOutIndexKeys: the filter holds provider and value
// keys, answers true for every key it was given and for every time-index or
// peer-index key (left out, never hidden), and costs nothing for the keys
// left out.
func TestLookupFilterLeavesOutIndexKeys(t *testing.T) {
	f := filterPolicies()[lookupFilterName]
	kadKey := func(i int) *record.KadKey {
		k := record.KadKey(sha256.Sum256(binary.BigEndian.AppendUint32(nil, uint32(i))))
		return &k
	}
	build := func(withIndex bool) []byte {
		w := f.NewWriter(pebble.TableFilter)
		for i := range 1000 {
			w.AddKey(provPrefix(nil, kadKey(i)))
			w.AddKey(valueKey(nil, kadKey(i)))
			if withIndex {
				w.AddKey(expiryKey(nil, int64(i), kindProvider, kadKey(i)))
				w.AddKey(peerPrefix(nil, "provider"))
			}
		}
		return w.Finish(nil)
	}
	with, without := build(true), build(false)
	if len(with) != len(without) {
		t.Fatalf("filter of 2 000 lookup keys and 2 000 index keys: %d bytes; of the lookup keys alone: %d", len(with), len(without))
	}
	for i := range 1000 {
		for _, k := range [][]byte{provPrefix(nil, kadKey(i)), valueKey(nil, kadKey(i)),
			expiryKey(nil, int64(i), kindProvider, kadKey(i)), expiryKey(nil, int64(-i), kindValue, kadKey(i+5000))} {
			if !f.MayContain(pebble.TableFilter, with, k) {
				t.Fatalf("MayContain(%x) = false", k)
			}
		}
	}
	fp := 0
	for i := 1000; i < 11000; i++ {
		if f.MayContain(pebble.TableFilter, with, provPrefix(nil, kadKey(i))) {
			fp++
		}
	}
	if fp > 300 { // 10 bits a key: about 1 %
		t.Fatalf("%d false positives in 10 000 absent keys", fp)
	}

	// Tables written before, with pebble's bloom filter of every key, keep
	// theirs: Open registers that policy under its own name too.
	old := bloom.FilterPolicy(10)
	p, ok := filterPolicies()[old.Name()]
	if !ok {
		t.Fatalf("pebble's bloom filter %q is not registered", old.Name())
	}
	w := old.NewWriter(pebble.TableFilter)
	e := expiryKey(nil, 1, kindProvider, kadKey(1))
	w.AddKey(e)
	if f := w.Finish(nil); !p.MayContain(pebble.TableFilter, f, e) {
		t.Fatal("an old table's filter does not find the keys it holds")
	}
}
