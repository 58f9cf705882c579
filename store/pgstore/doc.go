// Package pgstore is the PostgreSQL backend of store.Store, for nodes that
// keep more records than one machine should, or that share one record set:
// several DHT nodes (different peer IDs) may open the same database and
// schema, and each serves the records any of them stored.
//
// Open(ctx, dsn, opts) connects through a pgx connection pool, creates the
// schema if needed and migrates it (versioned migrations, each in a
// transaction, serialised between nodes that start at once by an advisory
// lock). A node needs no superuser: a role that owns its database, or owns
// the schema, is enough (docs/POSTGRES.md).
//
// Layout. Provider records are rows keyed by (kadkey, provider), where kadkey
// is the SHA-256 of the record key: a provider lookup and a keyspace region
// are each one range of the primary key, in scan order. A (provider_hash,
// kadkey) index (provider_hash: the first 8 bytes of the SHA-256 of the
// provider ID) serves scans of one provider's records, and an index on expiry
// time serves Expire, so its cost grows with what expired. Value records are
// keyed by kadkey, with a (publisher, kadkey) and an expiry index. Record
// counts live in a small table of counters updated by the statements that
// insert and delete, so Stats and Limits.MaxRecords never count rows.
//
// Writes. Each call is one statement, so one round trip, that checks the
// limits, writes, and updates the counters atomically. AddProviders sends a
// batch as arrays (a multi-row upsert); batches above Options.BatchSize run
// as several statements in one transaction. A write that returned nil is
// committed with the server's durability (synchronous_commit).
//
// Time. Every statement takes the store's clock reading as a parameter; the
// server's clock is never used, so nodes and tests decide what is live.
//
// Limits on a shared database. The checks read the committed state when the
// statement starts; concurrent writers (other connections or other nodes) do
// not see each other's uncommitted records, so MaxProvidersPerKey,
// MaxRecordsPerProvider and MaxRecords can be exceeded by the records of
// batches that run at the same moment. They are exact for a single writer,
// and approximate, by at most the concurrent batches' new records, otherwise.
//
// Faults. A call that cannot reach the server, or loses its connection,
// returns an error matching ErrUnavailable that wraps the pgx error. The pool
// reconnects by itself when the server is back; the store need not be
// reopened. Every write is idempotent, and a call that lost its connection is
// retried once on a fresh connection before it fails, which hides the dead
// pooled connections a server restart leaves behind.
package pgstore
