package pebblestore

import (
	"encoding/binary"
	"testing"
)

// ip4Addr is /ip4/<i>/tcp/4001 in bytes.
func ip4Addr(i uint32) []byte {
	b := binary.BigEndian.AppendUint32([]byte{0x04}, i) // ip4
	return append(b, 0x06, 0x0f, 0xa1)                  // tcp 4001
}

// TestAddrCacheStepsAside: addresses that never repeat switch the cache's
// shards to decoding alone (the cache stays empty), addresses that repeat
// are served from it, and every answer is the address asked for.
func TestAddrCacheStepsAside(t *testing.T) {
	c := newAddrCache()
	check := func(b []byte) {
		t.Helper()
		a, err := c.get(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Bytes()) != string(b) {
			t.Fatalf("get(%x) = %s", b, a)
		}
		if cap(a) != len(a) {
			t.Fatalf("cached multiaddr has spare capacity %d > %d", cap(a), len(a))
		}
	}
	entries := func() (n, bypassing int) {
		for i := range c.shards {
			n += len(c.shards[i].m)
			if c.shards[i].bypass > 0 {
				bypassing++
			}
		}
		return n, bypassing
	}

	// Unique addresses: after one window per shard, every shard bypasses.
	for i := range uint32(addrCacheShards * addrWindow * 2) {
		check(ip4Addr(i))
	}
	if n, bypassing := entries(); bypassing != addrCacheShards || n != 0 {
		t.Fatalf("after unique addresses: %d shards bypass the cache, %d entries; want %d and 0", bypassing, n, addrCacheShards)
	}

	// Repeating addresses: once the bypass runs out, they are cached and hit.
	hot := [][]byte{ip4Addr(1 << 30), ip4Addr(1<<30 + 1), ip4Addr(1<<30 + 2)}
	for i := range addrCacheShards * (addrBypass + 2*addrWindow) {
		check(hot[i%len(hot)])
	}
	n, bypassing := entries()
	if n != len(hot) {
		t.Fatalf("after repeating addresses: %d entries (%d shards bypassing), want the %d hot ones", n, bypassing, len(hot))
	}
}
