package store

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The functions in this file are the input rules every backend applies, kept in
// one place so that all backends answer bad input the same way.

// CheckKey validates a record key.
func (l Limits) CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > l.MaxKeySize:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), l.MaxKeySize)
	}
	return nil
}

// CheckPeer validates a peer ID: it must be non-empty and a valid multihash.
func CheckPeer(p peer.ID) error {
	if p == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPeer)
	}
	if _, err := peer.IDFromBytes([]byte(p)); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPeer, err)
	}
	return nil
}

// CheckExpiry validates an expiry against the clock reading now.
func (l Limits) CheckExpiry(expires, now time.Time) error {
	switch {
	case !expires.After(now):
		return fmt.Errorf("%w: expires %v, now %v", ErrExpired, expires.UTC(), now.UTC())
	case expires.Sub(now) > l.MaxTTL:
		return fmt.Errorf("%w: %v ahead, limit %v", ErrTTLTooLong, expires.Sub(now).Round(time.Millisecond), l.MaxTTL)
	}
	return nil
}

// CheckProvider validates a provider record for storing at time now.
func (l Limits) CheckProvider(r ProviderRecord, now time.Time) error {
	if err := l.CheckKey(r.Key); err != nil {
		return err
	}
	if err := CheckPeer(r.Provider); err != nil {
		return err
	}
	if len(r.Addrs) > l.MaxAddrs {
		return fmt.Errorf("%w: %d, limit %d", ErrTooManyAddrs, len(r.Addrs), l.MaxAddrs)
	}
	for _, a := range r.Addrs {
		if a == nil || len(a.Bytes()) == 0 {
			return fmt.Errorf("%w: empty address", ErrInvalidAddr)
		}
	}
	return l.CheckExpiry(r.Expires, now)
}

// CheckValue validates a value record for storing at time now.
func (l Limits) CheckValue(r ValueRecord, now time.Time) error {
	if err := l.CheckKey(r.Key); err != nil {
		return err
	}
	if len(r.Value) > l.MaxValueSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(r.Value), l.MaxValueSize)
	}
	if r.Publisher != "" {
		if err := CheckPeer(r.Publisher); err != nil {
			return err
		}
	}
	return l.CheckExpiry(r.Expires, now)
}

// Live reports whether a record with the given expiry is served at time now:
// it has not expired, and its expiry is not implausibly far ahead (more than
// 2×MaxTTL, which only a clock jump can produce).
func (l Limits) Live(expires, now time.Time) bool {
	return expires.After(now) && expires.Sub(now) <= 2*l.MaxTTL
}

// CheckScan validates scan options and fills in defaults. It returns the
// normalized options and the position to resume after (nil for the start).
func CheckScan(opts ScanOptions) (ScanOptions, *Position, error) {
	if opts.Kind != Providers && opts.Kind != Values {
		return opts, nil, fmt.Errorf("%w: kind %d", ErrBadScan, opts.Kind)
	}
	if !opts.Region.Valid() {
		return opts, nil, fmt.Errorf("%w: region of %d bits", ErrBadScan, opts.Region.Bits)
	}
	if opts.Peer != "" {
		if err := CheckPeer(opts.Peer); err != nil {
			return opts, nil, fmt.Errorf("%w: %w", ErrBadScan, err)
		}
	}
	if opts.Limit <= 0 {
		opts.Limit = DefaultScanLimit
	}
	opts.Limit = min(opts.Limit, MaxScanLimit)
	if opts.After == nil {
		return opts, nil, nil
	}
	pos, err := opts.After.Decode(opts.Kind)
	if err != nil {
		return opts, nil, err
	}
	return opts, &pos, nil
}
