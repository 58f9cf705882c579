package store

import (
	"log/slog"
	"time"
)

// Default limits.
const (
	DefaultMaxKeySize         = 1 << 10
	DefaultMaxValueSize       = 64 << 10
	DefaultMaxAddrs           = 32
	DefaultMaxProvidersPerKey = 20
	DefaultMaxTTL             = 48 * time.Hour
	DefaultMaxRecords         = 100_000_000
	DefaultScanLimit          = 1000
	// MaxScanLimit caps ScanOptions.Limit, so one page is always bounded.
	MaxScanLimit = 100_000
)

// Limits are the bounds a store enforces. The zero value of each field means its
// default (see EnsureDefaults); a negative value switches a count limit off.
type Limits struct {
	// MaxKeySize is the longest record key accepted. Default 1 KiB.
	MaxKeySize int
	// MaxValueSize is the longest value accepted. Default 64 KiB.
	MaxValueSize int
	// MaxAddrs is the most addresses stored with one provider record.
	// Default 32. Callers that take addresses from the network trim to it.
	MaxAddrs int
	// MaxProvidersPerKey caps the providers stored for one key, and so the
	// answer of Providers. Default 20, the Kademlia k.
	MaxProvidersPerKey int
	// MaxTTL is the furthest ahead of now an expiry may be. Default 48 h.
	MaxTTL time.Duration
	// MaxRecords caps the records of both kinds. Default 100 M (generous: the
	// cap exists so an unbounded flood cannot fill the disk). Negative: no cap.
	MaxRecords int64
	// MaxRecordsPerProvider caps the provider records of one provider. Default
	// off (0 or negative): enabling it costs a counter update per new record.
	MaxRecordsPerProvider int64
}

// EnsureDefaults fills zero fields with their defaults.
func (l *Limits) EnsureDefaults() {
	if l.MaxKeySize == 0 {
		l.MaxKeySize = DefaultMaxKeySize
	}
	if l.MaxValueSize == 0 {
		l.MaxValueSize = DefaultMaxValueSize
	}
	if l.MaxAddrs == 0 {
		l.MaxAddrs = DefaultMaxAddrs
	}
	if l.MaxProvidersPerKey == 0 {
		l.MaxProvidersPerKey = DefaultMaxProvidersPerKey
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = DefaultMaxTTL
	}
	if l.MaxRecords == 0 {
		l.MaxRecords = DefaultMaxRecords
	}
}

// Options are the settings every backend shares. Backends embed them in their
// own options struct.
type Options struct {
	// Limits are the bounds enforced; zero fields take their defaults.
	Limits Limits
	// Now is the store's clock. Default time.Now. Tests inject a fake clock so
	// that expiry is tested without sleeping.
	Now func() time.Time
	// Logger receives reports of corrupt records and background problems.
	// Default slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	o.Limits.EnsureDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}
