// Package dsimport imports the provider records of a go-libp2p-kad-dht node
// (such as Kubo) from its go-datastore directory into a kadstore store.Store.
// It backs `kadstore import --from-datastore DIR`.
//
// # What the datastore holds
//
// go-libp2p-kad-dht's ProviderManager keeps one datastore entry per (content
// key, provider) pair:
//
//	key:   /providers/<base32(multihash)>/<base32(peer ID)>
//	value: varint(UnixNano of the time the record was added or refreshed)
//
// where base32 is RFC 4648 without padding (go-base32's RawStdEncoding). The
// provider's addresses are not in the datastore: the DHT keeps them in its
// in-memory peerstore, so they are gone after a restart. Imported records
// therefore have no addresses; the node serves them as it serves any record
// whose provider it must look up, and each provider's next re-announcement
// (Kubo re-announces every 22 h by default) refreshes the record with its
// addresses.
//
// Expiry is added time + Options.TTL (48 h by default, the DHT's provide
// validity, the same rule the DHT applies when it reads the entry). Entries
// already expired by that rule are skipped and counted. An entry written
// "in the future" (the writer's clock was ahead of ours) would outlive the
// validity, so its expiry is clamped to now + TTL and it is counted in
// Result.Clamped.
//
// # Formats
//
// Kubo keeps this datastore in its repository: LevelDB by default (the
// repo's datastore/ directory, written by go-ds-leveldb through
// github.com/syndtr/goleveldb, whose raw keys are the datastore key strings),
// or Pebble with the pebbleds profile (the repo's pebbleds/ directory,
// written by go-ds-pebble). Import detects which from the files in the
// directory (LevelDB: CURRENT, MANIFEST-*, *.ldb/*.log; Pebble: OPTIONS-*
// and marker.* files) and accepts the repository root as well.
//
// Pebble stores are read with github.com/cockroachdb/pebble/v2 v2.1.7, which
// reads format major versions FormatFlushableIngest (13) to
// FormatValueSeparation (24). Current Kubo (go-ds-pebble v0.5.x on pebble
// v2.1.6) ratchets its store to pebble's newest format, 24, unless its
// Datastore.Spec pins formatMajorVersion; a store last written by pebble v1
// at version 13 to 16 reads too. A store still in format 1 (pebble v1's
// default, which early pebbleds repositories kept) cannot be read by pebble
// v2 at all, and a store newer than 24 needs a newer pebble: both give
// ErrUnsupportedFormat naming the version found. Badger datastores are not
// supported.
//
// # Safety
//
// The datastore is opened read-only and is never modified: LevelDB through
// goleveldb's ReadOnly mode, Pebble in ReadOnly mode over a file system that
// refuses every write. Both take a shared lock on the store's LOCK file, so
// a store that a running node holds open gives ErrLocked instead of being
// read while it changes (stop the node, or import from a copy taken while it
// was stopped), and the node cannot start while the import reads.
//
// # Scale
//
// Only the provider key range (Options.Prefix, "/providers/" by default) is
// read, so blocks and other records kept in the same store are never
// visited. Records stream into the store in batches of Options.BatchSize; a
// batch the store refuses because of a bad record is retried one record at a
// time, so only the bad records are skipped. Memory is one batch, whatever
// the size of the datastore.
package dsimport
