package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// PutValue stores r, replacing any record with the same key, in one
// statement.
func (s *Store) PutValue(ctx context.Context, r store.ValueRecord) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := s.lim.CheckValue(r, s.opts.Now()); err != nil {
		return err
	}
	kk := record.KadKeyOf(r.Key)
	value := r.Value
	if value == nil {
		value = []byte{} // the column is NOT NULL
	}
	return s.retry(ctx, "put value", func(ctx context.Context) error {
		var code int
		err := s.pool.QueryRow(ctx, s.sql.putValue,
			kk[:], r.Key, value, []byte(r.Publisher), millis(r.Received), millis(r.Expires),
			s.slot(), limitArg(s.lim.MaxRecords),
		).Scan(&code)
		if err != nil {
			return err
		}
		if code == verdictStoreFull {
			return fmt.Errorf("%w: limit %d records", store.ErrStoreFull, s.lim.MaxRecords)
		}
		return nil
	})
}

// GetValue returns the live record with the key, store.ErrNotFound, or an
// error matching store.ErrCorrupt for a stored record that does not decode.
func (s *Store) GetValue(ctx context.Context, key []byte) (store.ValueRecord, error) {
	if err := s.start(ctx); err != nil {
		return store.ValueRecord{}, err
	}
	if err := s.lim.CheckKey(key); err != nil {
		return store.ValueRecord{}, err
	}
	kk := record.KadKeyOf(key)
	now, far := s.bounds(s.opts.Now())
	r := valueRow{kadkey: kk[:]}
	err := s.retry(ctx, "get value", func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, s.sql.getValue, kk[:], now, far).
			Scan(&r.key, &r.value, &r.publisher, &r.received, &r.expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.ValueRecord{}, err
	}
	rec, err := r.decode()
	if err != nil {
		s.log.Error("pgstore: corrupt value record", "kadkey", kk, "err", err)
		return store.ValueRecord{}, fmt.Errorf("pgstore: get value: %w", err)
	}
	return rec, nil
}

// DeleteValue removes the record with the key, if any.
func (s *Store) DeleteValue(ctx context.Context, key []byte) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	if err := s.lim.CheckKey(key); err != nil {
		return err
	}
	kk := record.KadKeyOf(key)
	return s.retry(ctx, "delete value", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, s.sql.deleteValue, kk[:], s.slot())
		return err
	})
}
