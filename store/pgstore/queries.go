package pgstore

import (
	"strings"

	"github.com/kadstore/kadstore/store"
)

// queries are the statements of a Store, with its schema filled in. Each write
// is one statement, so one round trip: the limit checks, the upsert or delete
// and the record_counts update run together, atomically. pgx prepares each
// statement once per connection and reuses it.
//
// Clock readings are always parameters (never the server's now()), so the
// store's injected clock decides what is live.
type queries struct {
	addProviders   string
	providers      string
	removeProvider string
	putValue       string
	getValue       string
	deleteValue    string
	scanProviders  string
	scanProvidersP string
	scanValues     string
	scanValuesP    string
	expireProvider string
	expireValues   string
	stats          string
}

func buildQueries(schema string, lim store.Limits) queries {
	r := strings.NewReplacer("{s}", schema)
	return queries{
		addProviders:   r.Replace(addProvidersSQL(lim.MaxProvidersPerKey > 0, lim.MaxRecordsPerProvider > 0, lim.MaxRecords > 0)),
		providers:      r.Replace(sqlProviders),
		removeProvider: r.Replace(sqlRemoveProvider),
		putValue:       r.Replace(sqlPutValue),
		getValue:       r.Replace(sqlGetValue),
		deleteValue:    r.Replace(sqlDeleteValue),
		scanProviders:  r.Replace(sqlScanProviders),
		scanProvidersP: r.Replace(sqlScanProvidersOfPeer),
		scanValues:     r.Replace(sqlScanValues),
		scanValuesP:    r.Replace(sqlScanValuesOfPeer),
		expireProvider: r.Replace(strings.ReplaceAll(sqlExpire, "{t}", "provider_records")),
		expireValues:   r.Replace(strings.ReplaceAll(sqlExpire, "{t}", "value_records")),
		stats:          r.Replace(sqlStats),
	}
}

// Verdicts of a write statement's limit checks.
const (
	verdictOK = iota
	verdictTooManyProviders
	verdictStoreFull
	verdictProviderFull
)

// addProvidersSQL returns the statement that upserts a batch of provider
// records, given as parallel arrays ($1-$6) sorted by (kadkey, provider)
// without duplicates (the sort gives concurrent batches one lock order, so
// they cannot deadlock), after checking the count limits that are on against
// what is stored:
//   - per key: stored providers + new ones <= $7;
//   - per provider: stored records + new ones <= $9, counted up to the limit
//     only, so the check reads at most the limit's index entries;
//   - total: record_counts + new records <= $8.
//
// A record is new when no row has its key and provider; a row that is there,
// even expired, is refreshed. Like Stats, the limits count stored rows, so an
// expired record keeps its place until Expire removes it. The checks read the
// snapshot the statement started with, so concurrent writers (other
// connections, other nodes) can each pass a check that together they breach:
// the limits are exact for one writer, and may be overshot by the new records
// of concurrent batches.
//
// The statement returns the verdict and, on a breach of a per-key or
// per-provider limit, the offending kadkey or provider. It writes nothing
// unless the verdict is verdictOK; $10 is the record_counts slot it updates.
// Each check costs index reads, so the statement has only those of the limits
// that are on; with none, it is a plain multi-row upsert.
func addProvidersSQL(perKey, perProvider, total bool) string {
	var b strings.Builder
	b.WriteString(`
WITH lim AS (
	SELECT $7::bigint AS per_key, $8::bigint AS total, $9::bigint AS per_provider, $10::smallint AS slot
),
input AS (
	SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[], $6::timestamptz[])
		AS t(kadkey, provider, provider_hash, key, addrs, expires)
),`)
	if perKey {
		// One read of each key's rows (a few: the limit bounds them) gives
		// both its count and whether the record is stored.
		b.WriteString(`
probe AS (
	SELECT i.*, c.n, c.present FROM input i CROSS JOIN LATERAL (
		SELECT count(*) AS n, coalesce(bool_or(p.provider = i.provider), false) AS present
		FROM {s}.provider_records p WHERE p.kadkey = i.kadkey
	) c
),
key_full AS (
	SELECT kadkey FROM probe GROUP BY kadkey
	HAVING max(n) + count(*) FILTER (WHERE NOT present) > (SELECT per_key FROM lim)
	LIMIT 1
),`)
	} else {
		b.WriteString(`
probe AS (
	SELECT i.*, EXISTS (
		SELECT 1 FROM {s}.provider_records p WHERE p.kadkey = i.kadkey AND p.provider = i.provider
	) AS present
	FROM input i
),
key_full AS (
	SELECT NULL::bytea AS kadkey WHERE false
),`)
	}
	if perProvider {
		b.WriteString(`
provider_full AS (
	SELECT f.provider FROM (
		SELECT provider, provider_hash, count(*) AS n FROM probe WHERE NOT present
		GROUP BY provider, provider_hash
	) f, lim
	WHERE f.n + (
		SELECT count(*) FROM (
			SELECT 1 FROM {s}.provider_records p
			WHERE p.provider_hash = f.provider_hash AND p.provider = f.provider
			LIMIT lim.per_provider
		) c
	) > lim.per_provider
	LIMIT 1
),`)
	} else {
		b.WriteString(`
provider_full AS (
	SELECT NULL::bytea AS provider WHERE false
),`)
	}
	if total {
		b.WriteString(`
store_full AS (
	SELECT 1 FROM (SELECT count(*) AS n FROM probe WHERE NOT present) f, lim
	WHERE f.n > 0 AND (SELECT sum(n) FROM {s}.record_counts) + f.n > lim.total
),`)
	} else {
		b.WriteString(`
store_full AS (
	SELECT 1 WHERE false
),`)
	}
	if !perKey && !perProvider && !total {
		// No check needs the probe: skip it.
		b.Reset()
		b.WriteString(`
WITH lim AS (
	SELECT $7::bigint AS per_key, $8::bigint AS total, $9::bigint AS per_provider, $10::smallint AS slot
),
input AS (
	SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[], $6::timestamptz[])
		AS t(kadkey, provider, provider_hash, key, addrs, expires)
),
key_full AS (
	SELECT NULL::bytea AS kadkey WHERE false
),
provider_full AS (
	SELECT NULL::bytea AS provider WHERE false
),
store_full AS (
	SELECT 1 WHERE false
),`)
	}
	b.WriteString(`
verdict AS (
	SELECT CASE
		WHEN EXISTS (SELECT 1 FROM key_full) THEN 1
		WHEN EXISTS (SELECT 1 FROM provider_full) THEN 3
		WHEN EXISTS (SELECT 1 FROM store_full) THEN 2
		ELSE 0 END AS code
),`)
	if !perKey && !perProvider && !total {
		b.WriteString(`
ins AS (
	INSERT INTO {s}.provider_records AS p (kadkey, provider, provider_hash, key, addrs, expires)
	SELECT kadkey, provider, provider_hash, key, addrs, expires FROM input
	ON CONFLICT (kadkey, provider) DO UPDATE
		SET key = excluded.key, addrs = excluded.addrs, expires = excluded.expires
	RETURNING (p.xmax = 0) AS inserted
),
added AS (
	SELECT count(*) AS n FROM ins WHERE inserted
),`)
	} else {
		// The probe tells new records from stored ones. New ones go in with a
		// plain INSERT, which skips the speculative insertion ON CONFLICT
		// costs (a quarter of a bulk load); if another writer stores one of
		// them first, the statement fails with unique_violation and is
		// retried (see AddProviders), and then finds it stored. Stored ones
		// are upserted: if another writer deletes one meanwhile (Expire,
		// RemoveProvider), it is inserted again, not lost.
		b.WriteString(`
fresh_ins AS (
	INSERT INTO {s}.provider_records (kadkey, provider, provider_hash, key, addrs, expires)
	SELECT kadkey, provider, provider_hash, key, addrs, expires FROM probe
	WHERE NOT present AND (SELECT code FROM verdict) = 0
	RETURNING 1
),
refresh AS (
	INSERT INTO {s}.provider_records AS p (kadkey, provider, provider_hash, key, addrs, expires)
	SELECT kadkey, provider, provider_hash, key, addrs, expires FROM probe
	WHERE present AND (SELECT code FROM verdict) = 0
	ON CONFLICT (kadkey, provider) DO UPDATE
		SET key = excluded.key, addrs = excluded.addrs, expires = excluded.expires
	RETURNING (p.xmax = 0) AS inserted
),
added AS (
	SELECT (SELECT count(*) FROM fresh_ins) + (SELECT count(*) FROM refresh WHERE inserted) AS n
),`)
	}
	b.WriteString(`
bump AS (
	UPDATE {s}.record_counts SET n = n + (SELECT n FROM added)
	WHERE kind = 1 AND slot = (SELECT slot FROM lim) AND (SELECT n FROM added) > 0
)
SELECT code,
	CASE code WHEN 1 THEN (SELECT kadkey FROM key_full) WHEN 3 THEN (SELECT provider FROM provider_full) END
FROM verdict`)
	return b.String()
}

// sqlProviders returns the live providers of one kadkey, in provider order:
// one range of the primary key.
const sqlProviders = `
SELECT provider, key, addrs, expires FROM {s}.provider_records
WHERE kadkey = $1 AND expires > $2 AND expires <= $3
ORDER BY provider
LIMIT $4`

const sqlRemoveProvider = `
WITH del AS (
	DELETE FROM {s}.provider_records WHERE kadkey = $1 AND provider = $2 RETURNING 1
)
UPDATE {s}.record_counts SET n = n - 1
WHERE kind = 1 AND slot = $3 AND EXISTS (SELECT 1 FROM del)`

// sqlPutValue upserts one value record, unless it is new and the store holds
// $8 records (-1: no limit); it returns the verdict.
const sqlPutValue = `
WITH verdict AS (
	SELECT CASE
		WHEN $8::bigint >= 0
			AND NOT EXISTS (SELECT 1 FROM {s}.value_records WHERE kadkey = $1)
			AND (SELECT sum(n) FROM {s}.record_counts) >= $8::bigint THEN 2
		ELSE 0 END AS code
),
ins AS (
	INSERT INTO {s}.value_records AS v (kadkey, key, value, publisher, received, expires)
	SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT code FROM verdict) = 0
	ON CONFLICT (kadkey) DO UPDATE
		SET key = excluded.key, value = excluded.value, publisher = excluded.publisher,
			received = excluded.received, expires = excluded.expires
	RETURNING (v.xmax = 0) AS inserted
),
bump AS (
	UPDATE {s}.record_counts SET n = n + 1
	WHERE kind = 2 AND slot = $7 AND EXISTS (SELECT 1 FROM ins WHERE inserted)
)
SELECT code FROM verdict`

const sqlGetValue = `
SELECT key, value, publisher, received, expires FROM {s}.value_records
WHERE kadkey = $1 AND expires > $2 AND expires <= $3`

const sqlDeleteValue = `
WITH del AS (
	DELETE FROM {s}.value_records WHERE kadkey = $1 RETURNING 1
)
UPDATE {s}.record_counts SET n = n - 1
WHERE kind = 2 AND slot = $2 AND EXISTS (SELECT 1 FROM del)`

// Scans read one range of an index in scan order, expired rows included: the
// caller drops those, so a page costs at most its limit in rows however many
// records expired, and the next page resumes after the last row read.
//
// sqlScanProviders: rows after the position ($1, $2), from kadkey $3 up to
// (not including) $4, by the primary key.
const sqlScanProviders = `
SELECT kadkey, provider, key, addrs, expires FROM {s}.provider_records
WHERE (kadkey, provider) > ($1, $2) AND kadkey >= $3 AND kadkey < $4
ORDER BY kadkey, provider
LIMIT $5`

// sqlScanProvidersOfPeer: rows of provider $1 (whose hash is $2) with $3 <=
// kadkey < $4, by the (provider_hash, kadkey) index.
const sqlScanProvidersOfPeer = `
SELECT kadkey, provider, key, addrs, expires FROM {s}.provider_records
WHERE provider_hash = $2 AND provider = $1 AND kadkey >= $3 AND kadkey < $4
ORDER BY kadkey
LIMIT $5`

const sqlScanValues = `
SELECT kadkey, key, value, publisher, received, expires FROM {s}.value_records
WHERE kadkey >= $1 AND kadkey < $2
ORDER BY kadkey
LIMIT $3`

const sqlScanValuesOfPeer = `
SELECT kadkey, key, value, publisher, received, expires FROM {s}.value_records
WHERE publisher = $1 AND kadkey >= $2 AND kadkey < $3
ORDER BY kadkey
LIMIT $4`

// sqlExpire deletes up to $3 rows of table {t} whose expiry is at or before
// $1, or after $2 (beyond 2×MaxTTL: a clock that jumped), found through the
// expires index, and returns how many it deleted. FOR UPDATE SKIP LOCKED lets
// several nodes expire at once: each deletes rows no other holds, so none
// waits for another (no deadlock) and no row is counted twice.
const sqlExpire = `
WITH far AS (
	SELECT ctid FROM {s}.{t} WHERE expires > $2
	ORDER BY expires DESC LIMIT $3
	FOR UPDATE SKIP LOCKED
),
old AS (
	SELECT ctid FROM {s}.{t} WHERE expires <= $1
	ORDER BY expires LIMIT greatest($3 - (SELECT count(*) FROM far), 0)
	FOR UPDATE SKIP LOCKED
),
del AS (
	DELETE FROM {s}.{t}
	WHERE ctid = ANY (ARRAY(SELECT ctid FROM far UNION ALL SELECT ctid FROM old))
	RETURNING 1
),
gone AS (
	SELECT count(*) AS n FROM del
),
bump AS (
	UPDATE {s}.record_counts SET n = n - (SELECT n FROM gone)
	WHERE kind = $4 AND slot = $5 AND (SELECT n FROM gone) > 0
)
SELECT n FROM gone`

const sqlStats = `
SELECT coalesce(sum(n) FILTER (WHERE kind = 1), 0)::bigint,
	coalesce(sum(n) FILTER (WHERE kind = 2), 0)::bigint,
	(pg_total_relation_size($1::text::regclass) + pg_total_relation_size($2::text::regclass) +
		pg_total_relation_size($3::text::regclass))::bigint
FROM {s}.record_counts`
