package store

import "errors"

// rejections are the errors by which a store refuses a record or a request
// for what it is (input errors) or for a configured limit (capacity errors),
// as opposed to failing. store/classify_test.go checks that every sentinel
// of this package is either listed here or named there as a failure, so a
// new sentinel cannot be left unclassified.
var rejections = []error{
	ErrEmptyKey, ErrKeyTooLarge, ErrInvalidPeer, ErrValueTooLarge,
	ErrTooManyAddrs, ErrInvalidAddr, ErrExpired, ErrTTLTooLong, ErrBadCursor, ErrBadScan,
	ErrTooManyProviders, ErrStoreFull, ErrProviderFull,
}

// IsRejection reports whether err is the store refusing a record or a
// request for its content or a configured limit (an input or capacity
// error): the same call will fail again, and the storage is sound. It is
// false for nil, ErrNotFound, ErrClosed, ErrCorrupt, ErrNoSpace,
// ErrUnavailable and any error the store did not classify (a failure).
func IsRejection(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range rejections {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
