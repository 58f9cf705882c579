package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/store"
)

func rndMH(rng *rand.Rand) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	h, _ := mh.Encode(b, mh.SHA2_256)
	return h
}

func TestZZExplain(t *testing.T) {
	dsn := os.Getenv("KADSTORE_TEST_POSTGRES")
	if dsn == "" || os.Getenv("ZZ") == "" {
		t.Skip()
	}
	ctx := context.Background()
	schema := "zz_explain"
	c, _ := pgx.Connect(ctx, dsn)
	c.Exec(ctx, "DROP SCHEMA IF EXISTS zz_explain CASCADE")
	now := time.Now()
	s, err := Open(ctx, dsn, Options{Schema: schema, Options: store.Options{Limits: store.Limits{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	peers := make([]peer.ID, 1000)
	for i := range peers {
		peers[i] = peer.ID(rndMH(rng))
	}
	mk := func(n int) []store.ProviderRecord {
		recs := make([]store.ProviderRecord, n)
		for i := range recs {
			recs[i] = store.ProviderRecord{Key: rndMH(rng), Provider: peers[rng.IntN(len(peers))], Addrs: []ma.Multiaddr{ma.StringCast("/ip4/1.2.3.4/tcp/4001")}, Expires: now.Add(time.Hour)}
		}
		return recs
	}
	for i := 0; i < 40; i++ {
		if err := s.AddProviders(ctx, mk(5000)...); err != nil {
			t.Fatal(err)
		}
	}
	b := newProviderBatch(mk(5000))
	mode := os.Getenv("ZZ")
	q := s.sql.addProviders
	switch mode {
	case "plain":
		q = "INSERT INTO zz_explain.provider_records (kadkey, provider, key, addrs, expires) SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::timestamptz[]) ON CONFLICT (kadkey, provider) DO UPDATE SET key = excluded.key, addrs = excluded.addrs, expires = excluded.expires"
	}
	args := []any{b.kadkeys, b.providers, b.keys, b.addrs, b.expires, int64(20), int64(-1), int64(-1), int16(1)}
	if mode == "plain" {
		args = args[:5]
	}
	tx, _ := s.pool.Begin(ctx)
	start := time.Now()
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		rows.Scan(&line)
		fmt.Println(line)
	}
	fmt.Println(time.Since(start), rows.Err())
	tx.Rollback(ctx)
}
