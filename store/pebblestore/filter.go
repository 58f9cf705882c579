package pebblestore

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// lookupFilter is pebble's bloom filter (10 bits a key, about 1 % false
// positives) holding only the keys the store looks up by prefix or point:
// provider keys (p|kadkey), value keys, per-provider counts and metadata.
// Time-index and peer-index keys, one or two a record, are only ever read by
// iterating a range, which no filter serves; leaving them out saves 1.25
// bytes a record on disk. MayContain answers true for a key of those spaces,
// so a filter that lacks them never hides one.
//
// It has a name of its own, so that a binary that knows only pebble's bloom
// filter ignores these filters instead of trusting them for the keys left
// out; the tables written before it keep pebble's name, which Open still
// registers (filterPolicies).
type lookupFilter struct{ bloom.FilterPolicy }

const lookupFilterName = "kadstore.lookup-keys.bloom"

func (lookupFilter) Name() string { return lookupFilterName }

func (f lookupFilter) MayContain(ftype pebble.FilterType, filter, key []byte) bool {
	return !inLookupFilter(key) || f.FilterPolicy.MayContain(ftype, filter, key)
}

func (f lookupFilter) NewWriter(ftype pebble.FilterType) pebble.FilterWriter {
	return lookupFilterWriter{f.FilterPolicy.NewWriter(ftype)}
}

type lookupFilterWriter struct{ pebble.FilterWriter }

func (w lookupFilterWriter) AddKey(key []byte) {
	if inLookupFilter(key) {
		w.FilterWriter.AddKey(key)
	}
}

// inLookupFilter reports whether a key's prefix (comparer.Split) goes into
// the filters.
func inLookupFilter(prefix []byte) bool {
	if len(prefix) == 0 {
		return true
	}
	switch prefix[0] {
	case tagExpiry, tagPeer, tagGuard:
		return false
	}
	return true
}

// filterPolicies are the filters Open can read: the one it writes, and
// pebble's bloom filter of stores written before it.
func filterPolicies() map[string]pebble.FilterPolicy {
	old := bloom.FilterPolicy(10)
	return map[string]pebble.FilterPolicy{
		lookupFilterName: lookupFilter{old},
		old.Name():       old,
	}
}
