// Package store defines the record store of a Kademlia DHT node: the Store
// contract that every backend implements, its options and limits, cursors for
// paged scans, and the sentinel errors callers match with errors.Is.
//
// The contract is written for disk. It answers the three questions an in-memory
// record store never had to:
//
// Time. Records carry wall-clock expiry (time.Time, kept as Unix milliseconds),
// which keeps its meaning across restarts. A store never accepts a record whose
// expiry lies more than Limits.MaxTTL ahead of its clock, and it never serves a
// record whose expiry lies more than 2×MaxTTL ahead (such a record can only come
// from a clock that jumped backwards, or an older configuration); Expire removes
// those too. So no clock jump can make a record immortal. Expired records are
// never returned, whether or not Expire has run yet: Expire only reclaims space.
//
// Memory. No method returns an unbounded result. Providers is capped by
// Limits.MaxProvidersPerKey; whole-store work goes through Scan, which returns one
// page and a Cursor. Scans run in Kademlia keyspace order (SHA-256 of the record
// key, then provider ID), may be restricted to a Region (a bit prefix of that
// keyspace) and to one peer, and resume from an opaque cursor that stays valid
// across restarts and across backends' internal changes. Within one scan, an item
// that exists, unchanged, for the whole scan is returned exactly once; an item
// added or removed during the scan may or may not be returned, and never twice.
// ScanProviders, ScanValues and Pages turn the pages into Go iterators.
//
// Concurrency. Every method is safe for concurrent use, may block on I/O, and
// honours its context: a cancelled or expired context makes a method return an
// error matching ctx.Err() (context.Canceled or context.DeadlineExceeded). A
// method that returned nil has made its write visible to every later call.
// After Close, every method returns ErrClosed.
//
// Durability. A write method that returned nil has made its write durable as
// its backend promises, before returning; nothing is acknowledged first and
// written later. The persistent backends promise, by default, that the write
// survives the death of the process (kill -9, a panic, the OOM killer): the
// embedded pebblestore hands every commit to the operating system before it
// returns, and pgstore's commit is the server's (with PostgreSQL's default
// synchronous_commit, it also survives the server machine's power loss).
// pebblestore's Options.Sync extends its promise to power loss and machine
// crashes by fsyncing each commit, shared among concurrent writers; without
// it a machine crash may lose the writes of the last seconds, and never
// damages the store. memstore keeps nothing across the end of its process.
// WriteBehind is the one component that acknowledges before the store
// commits: it is for records received from other peers, which their
// publishers republish, and bounds what a crash loses to 2×MaxRecords of
// them.
//
// Limits. Each limit in Limits is a distinct error: a value larger than
// MaxValueSize gives ErrValueTooLarge, a new provider for a key that already has
// MaxProvidersPerKey gives ErrTooManyProviders, a new record beyond MaxRecords
// gives ErrStoreFull, a new record of a provider that already has
// MaxRecordsPerProvider gives ErrProviderFull. The limits count stored records:
// an expired record keeps its place until Expire removes it, as Stats counts it
// until then. Refreshing a record that is already stored (same key, same
// provider), expired or not, never fails on a count limit. Bad input (an empty
// or oversized key, an invalid peer ID, an expiry in the past or beyond MaxTTL)
// gives its own error and stores nothing. AddProviders applies a batch
// atomically: either every record is stored or, on error, none; it checks every
// record's input before any count limit, and applies the records in order (of
// two with the same key and provider, the last wins, and they count once).
//
// Corruption. A stored record whose bytes no longer decode is reported (logged,
// and counted in Page.Skipped for scans) and skipped; it never hides the other
// records. GetValue of a corrupt record returns an error matching ErrCorrupt.
// Damage a backend finds below the record level (an sstable block whose
// checksum fails) is the same: Providers and GetValue of a key it covers
// return ErrCorrupt, scans skip what they cannot read and count it in
// Page.Skipped, and every other record is served. No method panics for what
// it finds on disk.
//
// Faults. A backend whose storage is damaged, full or failed says so through
// Health (HealthReporter), which the node shows in /healthz, /v1/stats and
// its metrics. Writes refused for want of disk space return ErrNoSpace;
// writes to storage that failed or cannot be reached return ErrUnavailable.
//
// Backends live in the sub-packages memstore, pebblestore and pgstore; the
// storetest package is the conformance suite they all pass.
package store
