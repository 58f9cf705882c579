package store

import "errors"

// Lookup and lifecycle errors.
var (
	// ErrNotFound is returned by GetValue when no live record has the key.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt is returned (wrapped) for stored bytes that no longer decode,
	// or that the backend cannot read back because its files are damaged
	// (a checksum mismatch). Only the records that cannot be read are lost;
	// the store keeps serving the others.
	ErrCorrupt = errors.New("store: corrupt record")
)

// Storage errors: the store cannot take the call now, for a reason outside
// the call. Nothing was written; the same call may succeed later.
var (
	// ErrNoSpace is returned by writes while the store's disk has less free
	// space than the backend keeps in reserve. Reads are still served, and
	// writes are taken again, without a restart, once space is freed.
	ErrNoSpace = errors.New("store: not enough free disk space")
	// ErrUnavailable is returned when the storage failed or cannot be
	// reached: a database server that went away, or an embedded database
	// that stopped taking writes after an I/O error it cannot recover from
	// (the error it wraps says which; Health reports it).
	ErrUnavailable = errors.New("store: storage unavailable")
)

// Input errors: the record or the request is malformed. Nothing is stored.
var (
	// ErrEmptyKey is returned for a record or request with an empty key.
	ErrEmptyKey = errors.New("store: empty key")
	// ErrKeyTooLarge is returned for a key longer than Limits.MaxKeySize.
	ErrKeyTooLarge = errors.New("store: key too large")
	// ErrInvalidPeer is returned for a provider ID that is empty or not a valid
	// peer ID, or a publisher ID that is not a valid peer ID.
	ErrInvalidPeer = errors.New("store: invalid peer ID")
	// ErrValueTooLarge is returned for a value longer than Limits.MaxValueSize.
	ErrValueTooLarge = errors.New("store: value too large")
	// ErrTooManyAddrs is returned for a provider record with more than
	// Limits.MaxAddrs addresses.
	ErrTooManyAddrs = errors.New("store: too many addresses")
	// ErrInvalidAddr is returned for a provider record with an empty (nil
	// or zero-length) address.
	ErrInvalidAddr = errors.New("store: invalid address")
	// ErrExpired is returned for a record whose expiry is not in the future.
	ErrExpired = errors.New("store: expiry not in the future")
	// ErrTTLTooLong is returned for a record that expires more than
	// Limits.MaxTTL after now.
	ErrTTLTooLong = errors.New("store: expiry beyond the maximum TTL")
	// ErrBadCursor is returned by Scan for a cursor it did not produce, or one
	// produced for another kind of scan.
	ErrBadCursor = errors.New("store: bad cursor")
	// ErrBadScan is returned by Scan for invalid options (unknown kind, region
	// prefix longer than the keyspace).
	ErrBadScan = errors.New("store: bad scan options")
)

// Capacity errors: a configured limit would be exceeded by a new record.
// Refreshing a stored record never returns them.
var (
	// ErrTooManyProviders is returned when a key already has
	// Limits.MaxProvidersPerKey providers and a new one is added.
	ErrTooManyProviders = errors.New("store: too many providers for key")
	// ErrStoreFull is returned when the store holds Limits.MaxRecords records
	// and a new one is added.
	ErrStoreFull = errors.New("store: store full")
	// ErrProviderFull is returned when a provider already has
	// Limits.MaxRecordsPerProvider records and a new one is added.
	ErrProviderFull = errors.New("store: too many records for provider")
)
