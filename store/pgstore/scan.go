package pgstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// keyspaceEnd is above every kadkey (32 bytes): the upper bound of a scan of
// a region that extends to the end of the keyspace.
var keyspaceEnd = bytes.Repeat([]byte{0xFF}, record.KadKeySize+1)

// after returns the smallest bytea above k: for 32-byte kadkeys, kadkey >=
// after(k) is kadkey > k.
func after(k record.KadKey) []byte { return append(k[:], 0) }

// Scan returns one page of live records in keyspace order. Each page is one
// index range read of at most opts.Limit rows: the primary key for a whole-store
// or region scan, the (provider_hash, kadkey) or (publisher, kadkey) index for a
// scan of one peer's records. Expired rows in the range are read and dropped,
// so a page may hold fewer than Limit records while Next is not nil.
func (s *Store) Scan(ctx context.Context, opts store.ScanOptions) (store.Page, error) {
	if err := s.start(ctx); err != nil {
		return store.Page{}, err
	}
	opts, pos, err := store.CheckScan(opts)
	if err != nil {
		return store.Page{}, err
	}
	start := opts.Region.Start()
	lo, hi := start[:], keyspaceEnd
	if end, ok := opts.Region.End(); ok {
		hi = end[:]
	}
	now := s.opts.Now()
	var page store.Page
	err = s.retry(ctx, "scan", func(ctx context.Context) error {
		page = store.Page{}
		if opts.Kind == store.Providers {
			return s.scanProviders(ctx, opts, pos, lo, hi, now, &page)
		}
		return s.scanValues(ctx, opts, pos, lo, hi, now, &page)
	})
	if err != nil {
		return store.Page{}, err
	}
	return page, nil
}

func maxBytes(a, b []byte) []byte {
	if bytes.Compare(a, b) >= 0 {
		return a
	}
	return b
}

func (s *Store) scanProviders(ctx context.Context, opts store.ScanOptions, pos *store.Position, lo, hi []byte, now time.Time, page *store.Page) error {
	var (
		rows pgx.Rows
		err  error
	)
	if opts.Peer == "" {
		// Resume after pos, or start at the region's first key: provider IDs
		// are never empty, so every row at lo is above (lo, "").
		ak, ap := lo, []byte{}
		if pos != nil && bytes.Compare(pos.Key[:], lo) >= 0 {
			ak, ap = pos.Key[:], []byte(pos.Provider)
		}
		rows, err = s.pool.Query(ctx, s.sql.scanProviders, ak, ap, lo, hi, opts.Limit)
	} else {
		// Every row has provider opts.Peer, so (kadkey, Peer) > pos is
		// kadkey >= pos.Key when Peer > pos.Provider, else kadkey > pos.Key.
		if pos != nil {
			k := pos.Key[:]
			if bytes.Compare([]byte(opts.Peer), []byte(pos.Provider)) <= 0 {
				k = after(pos.Key)
			}
			lo = maxBytes(lo, k)
		}
		rows, err = s.pool.Query(ctx, s.sql.scanProvidersP, []byte(opts.Peer), providerHash([]byte(opts.Peer)), lo, hi, opts.Limit)
	}
	if err != nil {
		return err
	}
	var (
		r providerRow
		n int
		// last is the position of the last row read whose provider is a
		// peer ID, the only kind a cursor can hold.
		last    store.Position
		hasLast bool
		lastKey record.KadKey
	)
	_, err = pgx.ForEachRow(rows, []any{&r.kadkey, &r.provider, &r.key, &r.addrs, &r.expires}, func() error {
		n++
		copy(lastKey[:], r.kadkey)
		p, perr := decodePeer(r.provider, "provider")
		if perr == nil {
			last, hasLast = store.Position{Key: lastKey, Provider: p}, true
		}
		if !s.lim.Live(r.expires, now) {
			return nil
		}
		rec, err := r.decode()
		if err != nil {
			s.log.Error("pgstore: skipping corrupt provider record", "kadkey", hex.EncodeToString(r.kadkey), "provider", hex.EncodeToString(r.provider), "err", err)
			page.Skipped++
			return nil
		}
		page.Providers = append(page.Providers, rec)
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case n < opts.Limit:
		// The range is exhausted: the scan is complete.
	case hasLast:
		// Rows after last (with a corrupt provider) are read again by the
		// next page, and skipped and counted again.
		page.Next = store.NewCursor(store.Providers, last)
	default:
		// A whole page of rows whose provider is not a peer ID: no cursor can
		// point between them, so resume at the next Kademlia key.
		if next, ok := (record.Region{Prefix: lastKey, Bits: record.KadKeySize * 8}).Next(); ok {
			s.log.Error("pgstore: scan skips the rest of a key after a page of corrupt provider IDs", "kadkey", lastKey)
			page.Next = store.NewCursor(store.Providers, store.Position{Key: next.Prefix})
		}
	}
	return nil
}

func (s *Store) scanValues(ctx context.Context, opts store.ScanOptions, pos *store.Position, lo, hi []byte, now time.Time, page *store.Page) error {
	if pos != nil {
		lo = maxBytes(lo, after(pos.Key))
	}
	var (
		rows pgx.Rows
		err  error
	)
	if opts.Peer == "" {
		rows, err = s.pool.Query(ctx, s.sql.scanValues, lo, hi, opts.Limit)
	} else {
		rows, err = s.pool.Query(ctx, s.sql.scanValuesP, []byte(opts.Peer), lo, hi, opts.Limit)
	}
	if err != nil {
		return err
	}
	var (
		r    valueRow
		n    int
		last store.Position
	)
	_, err = pgx.ForEachRow(rows, []any{&r.kadkey, &r.key, &r.value, &r.publisher, &r.received, &r.expires}, func() error {
		n++
		copy(last.Key[:], r.kadkey)
		if !s.lim.Live(r.expires, now) {
			return nil
		}
		rec, err := r.decode()
		if err != nil {
			s.log.Error("pgstore: skipping corrupt value record", "kadkey", hex.EncodeToString(r.kadkey), "err", err)
			page.Skipped++
			return nil
		}
		page.Values = append(page.Values, rec)
		return nil
	})
	if err != nil {
		return err
	}
	if n == opts.Limit {
		page.Next = store.NewCursor(store.Values, last)
	}
	return nil
}
