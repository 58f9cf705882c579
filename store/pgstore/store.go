package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kadstore/kadstore/store"
)

// Store is a store.Store on a PostgreSQL database. It is safe for concurrent
// use, and several Stores (several nodes) may share one schema.
type Store struct {
	pool   *pgxpool.Pool
	opts   Options
	lim    store.Limits
	log    *slog.Logger
	schema string // quoted, for building SQL
	sql    queries
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value connection string, as pgx accepts), creates and migrates the
// store's schema, and returns the store. It fails with an error matching
// ErrUnavailable when the server cannot be reached, and ErrSchemaVersion when
// a newer kadstore has migrated the schema.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts.EnsureDefaults()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "kadstore"
	}
	// Every statement compares with a clock reading passed as a parameter,
	// never the server's now(), so the session time zone does not matter;
	// UTC keeps psql output of the tables easy to read.
	if _, ok := cfg.ConnConfig.RuntimeParams["timezone"]; !ok {
		cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{
		pool:   pool,
		opts:   opts,
		lim:    opts.Limits,
		log:    opts.Logger,
		schema: pgx.Identifier{opts.Schema}.Sanitize(),
	}
	s.sql = buildQueries(s.schema, s.lim)
	err = s.retry(ctx, "open", func(ctx context.Context) error {
		return pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
			return migrate(ctx, c.Conn(), opts.Schema)
		})
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the connection pool, waiting for calls in progress to finish.
// Calls after Close return store.ErrClosed; Close is idempotent.
func (s *Store) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		s.pool.Close()
	}
	return nil
}

// Stats returns the record counts kept in record_counts (exact, and cheap:
// no table is read) and the size of the store's tables and indexes.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	err := s.retry(ctx, "stats", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, s.sql.stats,
			s.schema+".provider_records", s.schema+".value_records", s.schema+".record_counts",
		).Scan(&st.ProviderRecords, &st.ValueRecords, &st.DiskBytes)
	})
	return st, err
}

// Pool returns the connection pool, for metrics (Pool().Stat()) and for
// operators' tools. Callers must not close it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// slot picks the record_counts row a write updates.
func (s *Store) slot() int16 { return int16(rand.IntN(counterSlots)) }

// bounds returns the clock reading now and the far bound of what is live: a
// record is served when now < expires <= far.
func (s *Store) bounds(now time.Time) (time.Time, time.Time) {
	return now, now.Add(2 * s.lim.MaxTTL)
}

// start is called at the top of every method.
func (s *Store) start(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// retry runs f, and runs it once more if it failed because the connection was
// lost. After a server restart every idle connection in the pool is dead, and
// pgxpool only pings those idle for more than a second; one retry on a fresh
// pool hides that from callers. Every operation of this package is idempotent
// (upserts, deletes, reads), so running it twice is safe even when the first
// attempt's commit was applied and only its acknowledgement was lost.
func (s *Store) retry(ctx context.Context, op string, f func(context.Context) error) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	err := f(ctx)
	if err == nil {
		return nil
	}
	if unavailable(err) && ctx.Err() == nil && !s.closed.Load() {
		// Drop every pooled connection: the ones idle now belong to the
		// server we lost. Connections in use are closed when released.
		s.pool.Reset()
		if err = f(ctx); err == nil {
			return nil
		}
	}
	return s.wrap(ctx, op, err)
}

// wrap turns an error from pgx into the error a caller matches: ErrClosed
// after Close, the context's error when it ended, ErrUnavailable for a lost
// or refused connection, and otherwise the pgx error itself; all with the
// operation's name.
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isStoreError(err):
		return err
	case s.closed.Load():
		return fmt.Errorf("pgstore: %s: %w", op, store.ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("pgstore: %s: %w (%v)", op, ctx.Err(), err)
	case unavailable(err):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// isStoreError reports whether err is one of the store package's input or
// limit errors, which are returned as they are.
func isStoreError(err error) bool {
	for _, e := range []error{
		store.ErrNotFound, store.ErrClosed, store.ErrCorrupt, store.ErrTooManyProviders,
		store.ErrStoreFull, store.ErrProviderFull,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// raced reports whether err is a race with another writer that running the
// statement again resolves: unique_violation (a record it meant to insert was
// inserted first), deadlock_detected, serialization_failure.
func raced(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// unavailable reports whether err means the server could not be reached or
// the connection was lost, as opposed to an error the server reported about
// a statement.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now (starting up, shutting down)
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
		errno      syscall.Errno
	)
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.As(err, &errno) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}
