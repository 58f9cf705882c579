package pgstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pgstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// uniqueSchema names a schema for one test.
func uniqueSchema(t testing.TB) string {
	return schemaFor(fmt.Sprintf("%s/%d", t.Name(), rand.Uint64()))
}

// node is one of several stores sharing a schema, as DHT nodes with their own
// peer IDs sharing one database.
type node struct {
	id peer.ID
	s  *pgstore.Store
}

func openNodes(t *testing.T, n int, clock *storetest.Clock, rng *rand.Rand) []node {
	t.Helper()
	dsn := testDSN(t)
	schema := uniqueSchema(t)
	nodes := make([]node, n)
	for i := range nodes {
		nodes[i] = node{
			id: storetest.RandomPeer(rng),
			s:  openSchema(t, dsn, schema, pgstore.Options{Options: store.Options{Now: clock.Now}}),
		}
	}
	return nodes
}

func scanAll(t *testing.T, s store.Store, opts store.ScanOptions) []store.ProviderRecord {
	t.Helper()
	var out []store.ProviderRecord
	for r, err := range store.ScanProviders(t.Context(), s, opts) {
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		out = append(out, r)
	}
	return out
}

func sortByPos(rs []store.ProviderRecord) {
	slices.SortFunc(rs, func(a, b store.ProviderRecord) int {
		pa := store.Position{Key: a.KadKey(), Provider: a.Provider}
		return pa.Compare(store.Position{Key: b.KadKey(), Provider: b.Provider})
	})
}

func equalRecords(got, want []store.ProviderRecord) bool {
	return slices.EqualFunc(got, want, store.ProviderRecord.Equal)
}

// TestSharedDatabase: nodes with different peer IDs on one schema. A record
// added through one node is served by the others, and each node finds its own
// records with a scan filtered by its peer ID.
func TestSharedDatabase(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	rng := storetest.NewRand(t)
	nodes := openNodes(t, 3, clock, rng)
	ctx := t.Context()

	shared := storetest.RandomKey(rng) // provided by every node
	own := make([][]store.ProviderRecord, len(nodes))
	var all []store.ProviderRecord
	for i, n := range nodes {
		recs := []store.ProviderRecord{storetest.NewProviderRecord(rng, shared, n.id, clock.Now().Add(time.Hour))}
		for range 50 {
			recs = append(recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), n.id, clock.Now().Add(time.Hour)))
		}
		if err := n.s.AddProviders(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		sortByPos(recs)
		own[i] = recs
		all = append(all, recs...)
	}
	sortByPos(all)

	for i, n := range nodes {
		got, err := n.s.Providers(ctx, shared, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(nodes) {
			t.Errorf("node %d: %d providers of the shared key, want %d", i, len(got), len(nodes))
		}
		// Another node's record, through this node.
		other := own[(i+1)%len(nodes)][0]
		if got, err := n.s.Providers(ctx, other.Key, 0); err != nil || !slices.ContainsFunc(got, other.Equal) {
			t.Errorf("node %d does not serve node %d's record: %v %v", i, (i+1)%len(nodes), got, err)
		}
		if got := scanAll(t, n.s, store.ScanOptions{Peer: n.id, Limit: 7}); !equalRecords(got, own[i]) {
			t.Errorf("node %d: scan of its own records: %d records, want its %d", i, len(got), len(own[i]))
		}
		if got := scanAll(t, n.s, store.ScanOptions{Limit: 13}); !equalRecords(got, all) {
			t.Errorf("node %d: scan of all records: %d records, want %d", i, len(got), len(all))
		}
		st, err := n.s.Stats(ctx)
		if err != nil || st.ProviderRecords != int64(len(all)) {
			t.Errorf("node %d: Stats %+v %v, want %d provider records", i, st, err, len(all))
		}
	}

	// A region scan of one node's records: the keyspace half by half.
	var halves []store.ProviderRecord
	for _, bit := range []byte{0, 0x80} {
		region := record.Region{Prefix: record.KadKey{bit}, Bits: 1}
		halves = append(halves, scanAll(t, nodes[1].s, store.ScanOptions{Peer: nodes[1].id, Region: region, Limit: 5})...)
	}
	if !equalRecords(halves, own[1]) {
		t.Errorf("region scans of node 1's records: %d records, want %d", len(halves), len(own[1]))
	}
}

// TestSharedExpire: several nodes expire one database at once; together they
// remove every expired record exactly once, without deadlock or error.
func TestSharedExpire(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	rng := storetest.NewRand(t)
	dsn := testDSN(t)
	schema := uniqueSchema(t)
	const nodes = 4
	stores := make([]*pgstore.Store, nodes)
	for i := range stores {
		// Small statements, so the nodes' deletes interleave.
		stores[i] = openSchema(t, dsn, schema, pgstore.Options{Options: store.Options{Now: clock.Now}, ExpireBatch: 50})
	}
	ctx := t.Context()
	const total, expiring, values = 3000, 1700, 300
	var recs []store.ProviderRecord
	for i := range total {
		ttl := time.Hour
		if i < expiring {
			ttl = time.Duration(1+rng.IntN(59)) * time.Minute
		}
		recs = append(recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(ttl)))
	}
	if err := stores[0].AddProviders(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for i := range values {
		v := storetest.NewValueRecord(rng, fmt.Appendf(nil, "/v/%d", i), "", clock.Now(), clock.Now().Add(time.Minute))
		if err := stores[1].PutValue(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Hour - time.Millisecond)

	counts := make([]int, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { counts[i], errs[i] = s.Expire(ctx, clock.Now(), 0) })
	}
	wg.Wait()
	sum := 0
	for i := range stores {
		if errs[i] != nil {
			t.Errorf("node %d: Expire: %v", i, errs[i])
		}
		sum += counts[i]
	}
	// A node may stop early when the others hold the rest; one more pass
	// finds nothing left if together they removed everything.
	n, err := stores[0].Expire(ctx, clock.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	sum += n
	if sum != expiring+values {
		t.Errorf("nodes removed %d records (%v, then %d), want %d", sum, counts, n, expiring+values)
	}
	st, err := stores[2].Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ProviderRecords != total-expiring || st.ValueRecords != 0 {
		t.Errorf("Stats after Expire: %+v, want %d provider records, 0 values", st, total-expiring)
	}
	if got := scanAll(t, stores[3], store.ScanOptions{Limit: 500}); len(got) != total-expiring {
		t.Errorf("scan after Expire: %d records, want %d", len(got), total-expiring)
	}
}

// TestConcurrentOpen: nodes that start at once on a fresh schema each migrate
// it or find it migrated; the migration runs once.
func TestConcurrentOpen(t *testing.T) {
	dsn := testDSN(t)
	schema := uniqueSchema(t)
	dropSchema(t, dsn, schema)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := pgstore.Open(t.Context(), dsn, pgstore.Options{Schema: schema, MaxConns: 2})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var rows, version int
	err = conn.QueryRow(t.Context(), "SELECT count(*), max(version) FROM "+pgx.Identifier{schema, "schema_version"}.Sanitize()).Scan(&rows, &version)
	if err != nil || rows != pgstore.SchemaVersion || version != pgstore.SchemaVersion {
		t.Errorf("schema_version: %d rows, version %d, %v; want %d migrations", rows, version, err, pgstore.SchemaVersion)
	}
}

// TestSchemaTooNew: a kadstore does not run on a schema a newer one migrated.
func TestSchemaTooNew(t *testing.T) {
	dsn := testDSN(t)
	schema := uniqueSchema(t)
	s := openSchema(t, dsn, schema, pgstore.Options{})
	s.Close()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), "INSERT INTO "+pgx.Identifier{schema, "schema_version"}.Sanitize()+" (version) VALUES ($1)", pgstore.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(t.Context(), dsn, pgstore.Options{Schema: schema})
	if !errors.Is(err, pgstore.ErrSchemaVersion) {
		t.Errorf("Open of a newer schema: %v, want ErrSchemaVersion", err)
	}
}
