// Package pebblestore is the default record store: embedded and persistent,
// on Pebble (github.com/cockroachdb/pebble/v2), the LSM engine of
// CockroachDB. It implements store.Store, passes the conformance suite
// (store/storetest) and keeps records, counts, the expiry index and scan
// cursors across restarts.
//
// # Layout
//
// One pebble database per directory. Keys begin with a tag byte that names
// their space; kadkey is the 32-byte Kademlia key (SHA-256 of the record
// key), provider the peer ID's bytes, expiry Unix milliseconds as 8
// big-endian bytes with the sign bit flipped (so byte order is time order):
//
//	p|kadkey|provider                   -> provider record
//	v|kadkey                            -> value record
//	e|expiry|P|kadkey[:4]               -> nil      time index, providers
//	e|expiry|V|kadkey                   -> nil      time index, values
//	o|len(provider)|provider|kadkey     -> nil      peer index
//	c|provider                          -> count    records of the provider
//	m|...                               -> metadata layout version, counts
//
// What each operation costs:
//
//   - Providers is one prefix seek on p|kadkey. The comparer splits
//     provider keys after that prefix and every level has bloom filters on
//     it, so a key nobody provides is usually answered from the filters
//     alone. Records come out in provider ID order, as the contract wants.
//   - AddProviders must know the key's stored providers (a refresh or a new
//     record, the per-key limit). It reads them with one prefix seek, except
//     for a key the key filter (keyfilter.go: a Bloom filter in memory of
//     the keys that have providers) says has none, and for a key a recent
//     commit wrote, whose providers it remembers. It then writes the record
//     and, unless its expiry is unchanged, a 14-byte time-index entry: it
//     never reads or deletes time-index entries.
//   - A scan of a Region is one key range of p| or v|: kadkey comes first,
//     so keyspace order is key order, and a Cursor (a position, not pebble
//     state) becomes the range's lower bound.
//   - A provider scan restricted to one Peer walks that provider's range of
//     the peer index, itself in Kademlia key order, and reads each record with
//     a seek that only moves forward: the node's own records are found
//     without reading the millions of records it stores for others. The
//     index costs about 40 bytes a record on disk after prefix compression
//     (a provider's entries share their prefix). A value scan restricted to a
//     publisher filters the v| range instead: value records are few.
//   - Expire reads the time index from its front up to now (and from its
//     back down to now+2×MaxTTL, for records a clock jump left too far
//     ahead). An entry names its records only by 4 bytes of their Kademlia
//     key, and entries of old expiries stay behind when a record is
//     refreshed or removed, so Expire reads the records each due entry may
//     name (entries sorted, with forward steps and seeks through p|) and
//     removes those whose stored expiry is the entry's; then it deletes the
//     visited entries with one range deletion. Live records outside the checked prefixes
//     are never read: its cost grows with what is due, not with the store.
//     The short entries are the reason: full ones (70 bytes of key and
//     provider) let Expire delete without reading, but cost 60 MB a million
//     records on disk (docs/BENCHMARKS.md).
//   - Record counts per kind are stored under m| and written by every batch
//     that changes them, so Stats and MaxRecords need no scan after a
//     restart. Per-provider counts (c|) exist only while
//     Limits.MaxRecordsPerProvider is set: Open builds them from the peer
//     index when the limit is switched on, and drops them when it is
//     switched off, since they would go stale.
//
// Layout version 1 had full time-index entries and guard keys for entries
// orphaned by damaged records; Open converts such a store once.
//
// # Values
//
// Records are stored in the record package's codec with two changes (see
// value.go): the expiry moves to a fixed 8-byte header, which lets a write
// find a record's time-index entry, and a provider record leaves out its
// provider, which its key holds. The codec's CRC-32C still covers every
// field, the spliced-back provider included. A record whose bytes no longer
// decode is logged with the store's logger, counted in Page.Skipped and
// skipped; GetValue returns an error matching store.ErrCorrupt. (Pebble's
// own block checksums catch damage to the files first; this is the last line
// against bugs and bad restores.)
//
// # Faults
//
// Damage Pebble's checksums find is returned as store.ErrCorrupt for the
// keys it covers, and scans step over it; Pebble's fatal errors stop the
// store's writes (store.ErrUnavailable) instead of the process; writes that
// add records are refused with store.ErrNoSpace below a free-space reserve
// (Options.MinFreeSpace); damage in the newest write-ahead log is counted at
// Open and the log kept for Salvage. Health reports all of it; Check and
// Salvage are `kadstore check` and its --repair. faults.go, space.go and
// wal.go explain each.
//
// # Concurrency
//
// Readers (GetValue, Providers, Scan, Stats) take no lock: each call reads
// through its own pebble iterator, a consistent snapshot as of its start.
// Writers are split into shards by Kademlia key (shard.go); a write holds its
// key's shard over its read-modify-write (the providers of the keys it
// writes, and the counts) and until pebble has applied its batch, then waits
// for the log without it; nothing a reader waits for. AddProviders calls for
// one shard that arrive while a batch is being committed are committed
// together in the next batch (group commit), each call still all or
// nothing, so concurrent small calls share the commit's write of the log,
// and with Options.Sync its fsync; calls for different shards commit in
// parallel. Expire deletes in batches of about a thousand entries, holding
// every shard for a batch. Every call holds a shared lock that Close takes
// exclusively, so Close waits for calls in flight, and calls after it return
// store.ErrClosed.
//
// # Durability and memory
//
// A write that returned nil survives the death of the process; with
// Options.Sync it also survives power loss (see Options.Sync and
// durability.go). Memory is bounded by Options.CacheSize,
// Options.MemTableSize, the key filter (1.25 to 2.5 bytes a key) and the
// recent keys (a few MiB at most), not by the records. A second Open of a directory that is open fails at once with
// ErrLocked.
package pebblestore
