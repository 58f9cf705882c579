package pgstore

import (
	"time"

	"github.com/kadstore/kadstore/store"
)

// Defaults of Options.
const (
	DefaultSchema         = "kadstore"
	DefaultBatchSize      = 5000
	DefaultExpireBatch    = 10000
	DefaultConnectTimeout = 5 * time.Second
)

// Options configure a Store. The zero value of each field means its default.
type Options struct {
	// Options are the settings every backend shares: limits, clock, logger.
	store.Options

	// Schema is the PostgreSQL schema holding the store's tables. Several
	// nodes that share one database use the same schema; separate stores in
	// one database use separate schemas. Default "kadstore". The schema is
	// created if it is missing (which needs the CREATE privilege on the
	// database) and migrated by Open.
	Schema string

	// MaxConns caps the connection pool. Default: pool_max_conns from the
	// DSN, else pgxpool's default (the larger of 4 and the number of CPUs).
	// Every connection is a server process: size it against the server's
	// max_connections across all nodes.
	MaxConns int32

	// BatchSize is the most records AddProviders writes in one statement.
	// Larger batches are split into statements of this size inside one
	// transaction, so they stay atomic. Default 5000.
	BatchSize int

	// ExpireBatch is the most records Expire deletes in one statement (one
	// transaction); a larger Expire runs several. Default 10000.
	ExpireBatch int

	// ConnectTimeout bounds each connection attempt when the DSN does not set
	// connect_timeout. Default 5 s.
	ConnectTimeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	o.Options.EnsureDefaults()
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.ExpireBatch <= 0 {
		o.ExpireBatch = DefaultExpireBatch
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
}
