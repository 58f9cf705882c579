package pebblestore

import (
	"hash/maphash"
	"sync"

	ma "github.com/multiformats/go-multiaddr"
)

// addrCache holds decoded multiaddrs by their bytes. Decoding a multiaddr
// (go-multiaddr validates every component and allocates each) costs more than
// reading and checking the rest of a record, while the records of one
// provider all carry the same few addresses: reads look them up here.
//
// It is bounded: a shard that fills up is emptied. Multiaddrs are immutable
// values, so records may share them; each is stored with its capacity cut to
// its length, so that an append by a caller copies rather than writes into
// the shared array.
//
// The cache pays only where addresses repeat; where they do not (a store of
// many providers with a few records each), a miss costs a map insert and an
// allocation on top of the decoding. So each shard counts its hits over a
// window of addrWindow lookups, and after a window with fewer than one hit in
// addrMinHitRate it decodes without the cache for addrBypass lookups, then
// tries it again.
type addrCache struct {
	seed   maphash.Seed
	shards [addrCacheShards]addrShard
}

const (
	addrCacheShards = 16
	// addrCacheSize bounds the entries (a few hundred bytes each, so a few
	// MiB in all).
	addrCacheSize = 16 << 10

	addrWindow     = 1024
	addrMinHitRate = 8
	addrBypass     = 15 * addrWindow
)

type addrShard struct {
	mu sync.Mutex
	m  map[string]ma.Multiaddr
	// looked and hits count the current window; bypass the lookups left to
	// decode without the cache.
	looked, hits, bypass int
}

func newAddrCache() *addrCache {
	c := &addrCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]ma.Multiaddr)
	}
	return c
}

// get returns the multiaddr encoded by b.
func (c *addrCache) get(b []byte) (ma.Multiaddr, error) {
	sh := &c.shards[maphash.Bytes(c.seed, b)%addrCacheShards]
	sh.mu.Lock()
	if sh.bypass > 0 {
		sh.bypass--
		sh.mu.Unlock()
		return decodeAddr(b)
	}
	a, ok := sh.m[string(b)]
	sh.looked++
	if ok {
		sh.hits++
	}
	if sh.looked == addrWindow {
		if sh.hits*addrMinHitRate < sh.looked {
			sh.bypass = addrBypass
			clear(sh.m)
		}
		sh.looked, sh.hits = 0, 0
	}
	sh.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := decodeAddr(b)
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	if sh.bypass == 0 {
		if len(sh.m) >= addrCacheSize/addrCacheShards {
			clear(sh.m)
		}
		sh.m[string(b)] = a
	}
	sh.mu.Unlock()
	return a, nil
}

// decodeAddr decodes a multiaddr, its capacity cut to its length.
func decodeAddr(b []byte) (ma.Multiaddr, error) {
	a, err := ma.NewMultiaddrBytes(b)
	if err != nil {
		return nil, err
	}
	return a[:len(a):len(a)], nil
}
