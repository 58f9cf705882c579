package pgstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

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

func cpuOf(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(u+st) * 10 * time.Millisecond
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
	plainQ := "INSERT INTO zz_explain.provider_records (kadkey, provider, key, addrs, expires, provider_hash) SELECT *, 0 FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::timestamptz[])"
	upsertQ := plainQ + " ON CONFLICT (kadkey, provider) DO UPDATE SET key = excluded.key, addrs = excluded.addrs, expires = excluded.expires"
	best := map[string]time.Duration{}

	for round := 0; round < 25; round++ {
		for _, m := range []string{"full", "plain"} {
			b := newProviderBatch(mk(5000))
			args := []any{b.kadkeys, b.providers, b.keys, b.addrs, b.expires}
			if m == "full" {
				args = []any{b.kadkeys, b.providers, b.providerHashes, b.keys, b.addrs, b.expires}
			}
			q := plainQ
			switch m {
			case "upsert":
				q = upsertQ
			case "full":
				q = s.sql.addProviders
				args = append(args, int64(20), int64(100_000_000), int64(-1), int16(1))
			}
			tx, _ := s.pool.Begin(ctx)
			switch m {
			case "noprov":
				tx.Exec(ctx, "DROP INDEX zz_explain.provider_records_provider")
				q = plainQ
			case "noexp":
				tx.Exec(ctx, "DROP INDEX zz_explain.provider_records_expires")
				q = plainQ
			case "hashprov":
				tx.Exec(ctx, "DROP INDEX zz_explain.provider_records_provider")
				tx.Exec(ctx, "CREATE INDEX ON zz_explain.provider_records (ph, kadkey)")
				q = "INSERT INTO zz_explain.provider_records (kadkey, provider, key, addrs, expires, ph) SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::timestamptz[], $6::int8[])"
				var ph []int64
				for _, p := range b.providers {
					ph = append(ph, int64(binary.BigEndian.Uint64(p[len(p)-8:])))
				}
				args = append(args, ph)
			case "provonly":
				tx.Exec(ctx, "DROP INDEX zz_explain.provider_records_provider")
				tx.Exec(ctx, "CREATE INDEX ON zz_explain.provider_records (provider)")
				q = plainQ
			case "noboth":
				tx.Exec(ctx, "DROP INDEX zz_explain.provider_records_expires")
				tx.Exec(ctx, "DROP INDEX zz_explain.provider_records_provider")
				q = plainQ
			}
			var pid int
			tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
			c0 := cpuOf(pid)
			if round == 24 && m == "full" {
				rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, TIMING OFF) "+q, args...)
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var line string
					rows.Scan(&line)
					fmt.Println(line)
				}
			} else if _, err := tx.Exec(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
			d := cpuOf(pid) - c0
			tx.Rollback(ctx)
			best[m] += d
		}
	}
	fmt.Println(best)
}
