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
type addrCache struct {
	seed   maphash.Seed
	shards [addrCacheShards]addrShard
}

const (
	addrCacheShards = 16
	// addrCacheSize bounds the entries (a few hundred bytes each, so a few
	// MiB in all).
	addrCacheSize = 16 << 10
)

type addrShard struct {
	mu sync.Mutex
	m  map[string]ma.Multiaddr
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
	a, ok := sh.m[string(b)]
	sh.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := ma.NewMultiaddrBytes(b)
	if err != nil {
		return nil, err
	}
	a = a[:len(a):len(a)]
	sh.mu.Lock()
	if len(sh.m) >= addrCacheSize/addrCacheShards {
		clear(sh.m)
	}
	sh.m[string(b)] = a
	sh.mu.Unlock()
	return a, nil
}
