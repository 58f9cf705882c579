package pgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// providerBatch is a batch of provider records as the parallel arrays
// addProvidersSQL takes.
type providerBatch struct {
	kadkeys, providers [][]byte
	providerHashes     []int64
	keys, addrs        [][]byte
	expires            []time.Time
}

func (b *providerBatch) slice(i, j int) providerBatch {
	return providerBatch{b.kadkeys[i:j], b.providers[i:j], b.providerHashes[i:j], b.keys[i:j], b.addrs[i:j], b.expires[i:j]}
}

// providerHash is the provider_hash column of a provider's records: the
// first 8 bytes of the SHA-256 of its ID, big-endian. Every node sharing a
// schema must compute it alike.
func providerHash(p []byte) int64 {
	h := sha256.Sum256(p)
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// newProviderBatch sorts the records by (kadkey, provider) and keeps the last
// of records with the same key and provider, as if they had been added one
// after the other.
func newProviderBatch(recs []store.ProviderRecord) providerBatch {
	type item struct {
		kadkey record.KadKey
		i      int
	}
	items := make([]item, len(recs))
	for i, r := range recs {
		items[i] = item{record.KadKeyOf(r.Key), i}
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if c := bytes.Compare(a.kadkey[:], b.kadkey[:]); c != 0 {
			return c
		}
		return bytes.Compare([]byte(recs[a.i].Provider), []byte(recs[b.i].Provider))
	})
	var b providerBatch
	for j, it := range items {
		if j+1 < len(items) && items[j+1].kadkey == it.kadkey && recs[items[j+1].i].Provider == recs[it.i].Provider {
			continue // a later record replaces this one
		}
		r := recs[it.i]
		b.kadkeys = append(b.kadkeys, it.kadkey[:])
		b.providers = append(b.providers, []byte(r.Provider))
		if n := len(b.providerHashes); n > 0 && bytes.Equal(b.providers[n-1], b.providers[n]) {
			b.providerHashes = append(b.providerHashes, b.providerHashes[n-1])
		} else {
			b.providerHashes = append(b.providerHashes, providerHash(b.providers[n]))
		}
		b.keys = append(b.keys, r.Key)
		b.addrs = append(b.addrs, encodeAddrs(r.Addrs))
		b.expires = append(b.expires, millis(r.Expires))
	}
	return b
}

// limitArg turns a count limit into the statements' form: -1 when off.
func limitArg(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// AddProviders stores the records as one atomic batch. A batch of up to
// Options.BatchSize records is one statement (one round trip); a larger one is
// several statements in one transaction.
func (s *Store) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	now := s.opts.Now()
	for _, r := range recs {
		if err := s.lim.CheckProvider(r, now); err != nil {
			return err
		}
	}
	b := newProviderBatch(recs)
	var err error
	for attempt := 1; ; attempt++ {
		err = s.retry(ctx, "add providers", func(ctx context.Context) error {
			if len(b.kadkeys) <= s.opts.BatchSize {
				return s.addProviders(ctx, s.pool, &b)
			}
			return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				for i := 0; i < len(b.kadkeys); i += s.opts.BatchSize {
					part := b.slice(i, min(i+s.opts.BatchSize, len(b.kadkeys)))
					if err := s.addProviders(ctx, tx, &part); err != nil {
						return err
					}
				}
				return nil
			})
		})
		// A concurrent writer stored one of the new records first, or two
		// overlapping batches deadlocked: the statement changed nothing, and
		// running it again sees the other writer's records.
		if !raced(err) || attempt == maxRaceAttempts {
			return err
		}
	}
}

// maxRaceAttempts bounds how often AddProviders runs a batch that lost a race
// with another writer.
const maxRaceAttempts = 5

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) addProviders(ctx context.Context, q querier, b *providerBatch) error {
	perKey := int64(s.lim.MaxProvidersPerKey)
	if perKey < 0 {
		perKey = -1
	}
	var (
		code    int
		culprit []byte
	)
	err := q.QueryRow(ctx, s.sql.addProviders,
		b.kadkeys, b.providers, b.providerHashes, b.keys, b.addrs, b.expires,
		perKey, limitArg(s.lim.MaxRecords), limitArg(s.lim.MaxRecordsPerProvider), s.slot(),
	).Scan(&code, &culprit)
	if err != nil {
		return err
	}
	switch code {
	case verdictOK:
		return nil
	case verdictTooManyProviders:
		return fmt.Errorf("%w: key with Kademlia key %s has %d", store.ErrTooManyProviders, hex.EncodeToString(culprit), s.lim.MaxProvidersPerKey)
	case verdictProviderFull:
		p, _ := peer.IDFromBytes(culprit)
		return fmt.Errorf("%w: %s has %d", store.ErrProviderFull, p, s.lim.MaxRecordsPerProvider)
	case verdictStoreFull:
		return fmt.Errorf("%w: limit %d records", store.ErrStoreFull, s.lim.MaxRecords)
	}
	return fmt.Errorf("pgstore: add providers: unknown verdict %d", code)
}

// Providers returns up to limit live providers of key in provider ID order:
// one range of the primary key.
func (s *Store) Providers(ctx context.Context, key []byte, limit int) ([]store.ProviderRecord, error) {
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	if err := s.lim.CheckKey(key); err != nil {
		return nil, err
	}
	var lim any // SQL LIMIT NULL: no limit
	if capacity := s.lim.MaxProvidersPerKey; capacity > 0 && (limit <= 0 || limit > capacity) {
		lim = capacity
	} else if limit > 0 {
		lim = limit
	}
	kk := record.KadKeyOf(key)
	now, far := s.bounds(s.opts.Now())
	var out []store.ProviderRecord
	err := s.retry(ctx, "providers", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.pool.Query(ctx, s.sql.providers, kk[:], now, far, lim)
		if err != nil {
			return err
		}
		r := providerRow{kadkey: kk[:]}
		_, err = pgx.ForEachRow(rows, []any{&r.provider, &r.key, &r.addrs, &r.expires}, func() error {
			rec, err := r.decode()
			if err != nil {
				s.log.Error("pgstore: skipping corrupt provider record", "kadkey", kk, "provider", hex.EncodeToString(r.provider), "err", err)
				return nil
			}
			out = append(out, rec)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []store.ProviderRecord{}
	}
	return out, nil
}

// RemoveProvider removes the record of provider p for key, if any.
func (s *Store) RemoveProvider(ctx context.Context, key []byte, p peer.ID) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := s.lim.CheckKey(key); err != nil {
		return err
	}
	if err := store.CheckPeer(p); err != nil {
		return err
	}
	kk := record.KadKeyOf(key)
	return s.retry(ctx, "remove provider", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, s.sql.removeProvider, kk[:], []byte(p), s.slot())
		return err
	})
}
