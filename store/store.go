package store

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
)

// ProviderRecord and ValueRecord are the record types a Store holds.
type (
	ProviderRecord = record.ProviderRecord
	ValueRecord    = record.ValueRecord
)

// Store is a persistent record store for a Kademlia DHT node. See the package
// documentation for the full contract: every method is safe for concurrent use,
// may block on I/O, honours ctx, and returns ErrClosed after Close.
type Store interface {
	// PutValue stores r, replacing any record with the same key. Choosing the
	// better of two records (the DHT validator's Select) is the caller's job.
	PutValue(ctx context.Context, r ValueRecord) error
	// GetValue returns the live record with the key, or ErrNotFound.
	GetValue(ctx context.Context, key []byte) (ValueRecord, error)
	// DeleteValue removes the record with the key. Deleting a missing record
	// is not an error.
	DeleteValue(ctx context.Context, key []byte) error

	// AddProviders stores the records as one atomic batch. A record with the
	// key and provider of a stored one replaces it (a refresh: new addresses,
	// new expiry) and never fails on a count limit.
	AddProviders(ctx context.Context, recs ...ProviderRecord) error
	// Providers returns at most limit live providers of key, in provider ID
	// order. limit <= 0 or above Limits.MaxProvidersPerKey means
	// MaxProvidersPerKey. A key with no providers gives an empty slice, not an
	// error.
	Providers(ctx context.Context, key []byte, limit int) ([]ProviderRecord, error)
	// RemoveProvider removes the record of provider p for key, if any.
	RemoveProvider(ctx context.Context, key []byte, p peer.ID) error

	// Scan returns one page of live records in keyspace order, after
	// opts.After. Page.Next is nil when the scan is complete.
	Scan(ctx context.Context, opts ScanOptions) (Page, error)
	// Expire removes up to limit records (of both kinds) whose expiry is at or
	// before now, or more than 2×MaxTTL after now, and returns how many it
	// removed. limit <= 0 means no limit. Its cost grows with what it removes,
	// not with what is stored.
	Expire(ctx context.Context, now time.Time, limit int) (int, error)
	// Stats returns counts of what is stored.
	Stats(ctx context.Context) (Stats, error)
	// Close releases the store. Calls after Close return ErrClosed; Close
	// itself is idempotent.
	Close() error
}

// Kind selects the records a scan walks.
type Kind uint8

// The kinds of record.
const (
	Providers Kind = iota + 1
	Values
)

func (k Kind) String() string {
	switch k {
	case Providers:
		return "providers"
	case Values:
		return "values"
	default:
		return "unknown"
	}
}

// ScanOptions select one page of a scan.
type ScanOptions struct {
	// Kind is Providers or Values.
	Kind Kind
	// Region restricts the scan to a bit prefix of the Kademlia keyspace. The
	// zero Region is the whole keyspace.
	Region record.Region
	// Peer, if set, restricts the scan to records of one peer: the provider of
	// provider records, the publisher of value records. This is how a node
	// walks "the records I provide myself", and how nodes sharing one database
	// tell their records apart.
	Peer peer.ID
	// After is the cursor of the previous page's Next; nil starts at the
	// beginning (of the region).
	After Cursor
	// Limit is the most records in the page; <= 0 means DefaultScanLimit, and
	// it is capped at MaxScanLimit.
	Limit int
}

// Page is one page of a scan.
type Page struct {
	// Providers holds the records of a Providers scan.
	Providers []ProviderRecord
	// Values holds the records of a Values scan.
	Values []ValueRecord
	// Next resumes the scan after this page; nil when the scan is complete. A
	// page may hold fewer than Limit records (even none) while Next is not nil:
	// only a nil Next ends the scan.
	Next Cursor
	// Skipped counts stored records in this page's range that were corrupt and
	// left out (each is also logged).
	Skipped int
}

// Len returns the number of records in the page.
func (p Page) Len() int { return len(p.Providers) + len(p.Values) }

// Stats are counts of what a store holds. Counts include expired records that
// Expire has not removed yet.
type Stats struct {
	ProviderRecords int64
	ValueRecords    int64
	// DiskBytes is the space the store uses on disk, 0 where unknown.
	DiskBytes int64
}
