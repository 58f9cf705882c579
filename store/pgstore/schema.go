package pgstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// counterSlots is how many rows each kind of record has in record_counts. A
// writer that adds or removes records updates one slot, chosen at random, so
// concurrent writers rarely wait for each other's row lock; Stats sums them.
const counterSlots = 16

// migrations are the schema versions in order: migrations[i] brings the schema
// from version i to version i+1. They are applied by Open, each in the same
// transaction as the version row that records it. Never edit a released
// migration; append a new one. {s} stands for the quoted schema name.
var migrations = []string{
	// 1: the tables and indexes.
	//
	// Provider records are keyed by (kadkey, provider): a provider lookup is
	// one range of the primary key, in provider order; a keyspace region is
	// one range of it, in scan order. (provider_hash, kadkey) serves scans of
	// one provider's records ("the records I provide myself") in scan order,
	// and expires serves Expire, whose cost so grows with what expired, not
	// with what is stored. provider_hash is the first 8 bytes of the SHA-256
	// of provider, big-endian: an index on it costs bulk loads a third less
	// CPU than one on the (long, much repeated) provider bytes. Value records
	// are keyed by kadkey alone, with a (publisher, kadkey) and an expires
	// index.
	//
	// Times are timestamptz at the codec's millisecond resolution; kadkey is
	// the SHA-256 of key; addrs holds the multiaddrs as (uvarint length,
	// bytes) pairs; publisher is empty when unknown. kadkey is declared
	// nearly unique (n_distinct), so the planner probes it by index from the
	// start instead of waiting for ANALYZE to learn it.
	`
CREATE TABLE {s}.provider_records (
	kadkey        bytea       NOT NULL,
	provider      bytea       NOT NULL,
	provider_hash bigint      NOT NULL,
	key           bytea       NOT NULL,
	addrs         bytea       NOT NULL,
	expires       timestamptz NOT NULL,
	PRIMARY KEY (kadkey, provider)
);
ALTER TABLE {s}.provider_records ALTER COLUMN kadkey SET (n_distinct = -0.5);
CREATE INDEX provider_records_provider ON {s}.provider_records (provider_hash, kadkey);
CREATE INDEX provider_records_expires ON {s}.provider_records (expires);

CREATE TABLE {s}.value_records (
	kadkey    bytea       NOT NULL PRIMARY KEY,
	key       bytea       NOT NULL,
	value     bytea       NOT NULL,
	publisher bytea       NOT NULL,
	received  timestamptz NOT NULL,
	expires   timestamptz NOT NULL
);
CREATE INDEX value_records_publisher ON {s}.value_records (publisher, kadkey);
CREATE INDEX value_records_expires ON {s}.value_records (expires);

-- Record counts for Stats and Limits.MaxRecords, kept exact by the statements
-- that insert and delete records (count(*) would read the whole table).
-- kind is store.Kind: 1 providers, 2 values.
CREATE TABLE {s}.record_counts (
	kind smallint NOT NULL,
	slot smallint NOT NULL,
	n    bigint   NOT NULL,
	PRIMARY KEY (kind, slot)
) WITH (fillfactor = 50);
INSERT INTO {s}.record_counts (kind, slot, n)
	SELECT k, s, 0 FROM generate_series(1, 2) k, generate_series(0, ` + fmt.Sprint(counterSlots-1) + `) s;
`,
}

// SchemaVersion is the schema version this package migrates to.
var SchemaVersion = len(migrations)

// migrateLockClass is the first key of the advisory lock that serialises
// migrations; the second is hashtext(schema name).
const migrateLockClass = 0x6b6164 // "kad"

// migrate brings the schema up to SchemaVersion. Nodes starting at once
// serialise on a transaction-scoped advisory lock, so each migration runs
// exactly once; the others find it applied.
func migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	s := pgx.Identifier{schema}.Sanitize()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", migrateLockClass, schema); err != nil {
		return err
	}
	// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database
	// even when the schema exists; check first, so that a role given only a
	// schema of its own can open the store.
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+s); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s+`.schema_version (
	version    integer     NOT NULL PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return err
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+s+".schema_version").Scan(&version); err != nil {
		return err
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: schema %s is at version %d, this kadstore knows %d", ErrSchemaVersion, schema, version, SchemaVersion)
	}
	for v := version; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, strings.ReplaceAll(migrations[v], "{s}", s)); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+s+".schema_version (version) VALUES ($1)", v+1); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	return tx.Commit(ctx)
}
