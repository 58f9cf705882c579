// Package storetest is the conformance suite of the store contract (package
// store): every backend runs it unchanged from its own tests, and passes.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB, dir string, opts store.Options) store.Store {
//			s, err := mybackend.Open(dir, mybackend.Options{Options: opts})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Each subtest opens a fresh store in its own t.TempDir() with a fake Clock
// (injected through store.Options.Now, so expiry is tested without sleeping)
// and the limits it needs, and closes it with t.Cleanup: subtests never depend
// on each other and may be selected with -run. RunPersistent adds the
// subtests of persistent backends: records, counts and scan cursors survive
// Close and reopening the same directory.
//
// Besides the rules written in package store's documentation, the suite pins
// down these points of the contract, so that all backends answer alike:
//
//   - Count limits count stored records: an expired record keeps its place,
//     against MaxRecords, MaxProvidersPerKey and MaxRecordsPerProvider, until
//     Expire removes it (as Stats counts it until then). Rewriting a stored
//     record, expired or not, is a refresh and never fails on a count limit.
//   - Every key-taking method checks the key (ErrEmptyKey, ErrKeyTooLarge) and
//     RemoveProvider checks the peer (ErrInvalidPeer), as writes do.
//   - AddProviders checks every record of the batch before any count limit,
//     applies the records in order (of two with the same key and provider, the
//     last wins, and they count once), and stores nothing on error.
//   - Page invariants: a page holds at most Limit records, all after its
//     cursor, in strictly increasing scan order, none after its Next, and Next
//     is strictly after the cursor, so a scan always ends.
//   - A cancelled context makes a method fail with an error matching ctx.Err()
//     and change nothing.
//   - Close is idempotent: a second Close returns nil.
//
// The model subtest (the metamorphic test) applies a random operation sequence
// to the backend and to memstore, the reference, and compares every answer.
// Its seed is logged; set STORETEST_SEED to repeat a run. Where the contract
// leaves a choice open the comparison allows it: scans are compared as whole
// scans, not page by page, and when several count limits are exceeded at once
// any of their errors is accepted.
//
// The generators (RandomPeer, RandomKey, NewProviderRecord, NewValueRecord)
// and the Clock are exported for backends' own tests.
package storetest

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
)

// OpenFunc opens a store whose data lives at dir (a directory made by the
// suite with t.TempDir(); a backend without files may ignore it; opening again
// with the same dir must reopen the same data for persistent backends). opts
// carries the injected clock and limits; the backend must honour them.
type OpenFunc func(t testing.TB, dir string, opts store.Options) store.Store

// Start is the fake clock's reading when each subtest begins. It is a whole
// second, so every time the suite makes is exact at the millisecond
// resolution of stored records.
var Start = time.Date(2030, time.January, 2, 3, 4, 5, 0, time.UTC)

type subtest struct {
	name string
	run  func(t *testing.T, open OpenFunc)
}

// conformance lists the subtests of Run.
var conformance = []subtest{
	{"ValueRoundTrip", testValueRoundTrip},
	{"ProviderRoundTrip", testProviderRoundTrip},
	{"ProvidersLimit", testProvidersLimit},
	{"Stats", testStats},
	{"InputErrors", testInputErrors},
	{"InputLimitsAccepted", testInputLimitsAccepted},
	{"TooManyProviders", testTooManyProviders},
	{"StoreFull", testStoreFull},
	{"ProviderFull", testProviderFull},
	{"BatchAtomic", testBatchAtomic},
	{"ExpiredHidden", testExpiredHidden},
	{"Expire", testExpire},
	{"ExpireLimit", testExpireLimit},
	{"ExpireNowArgument", testExpireNowArgument},
	{"RefreshExpiry", testRefreshExpiry},
	{"ClockJumpBack", testClockJumpBack},
	{"ScanAll", testScanAll},
	{"ScanEmpty", testScanEmpty},
	{"ScanRegion", testScanRegion},
	{"ScanPeer", testScanPeer},
	{"ScanResume", testScanResume},
	{"ScanCursorPortable", testScanCursorPortable},
	{"ScanBadCursor", testScanBadCursor},
	{"ScanBadOptions", testScanBadOptions},
	{"ScanConcurrentWrites", testScanConcurrentWrites},
	{"ContextCanceled", testContextCanceled},
	{"Closed", testClosed},
	{"Concurrent", testConcurrent},
	{"Model", testModel},
}

// persistence lists the subtests RunPersistent adds.
var persistence = []subtest{
	{"ReopenRecords", testReopenRecords},
	{"ReopenScanCursor", testReopenScanCursor},
	{"ReopenExpiry", testReopenExpiry},
	{"ReopenLimits", testReopenLimits},
	{"Model", func(t *testing.T, open OpenFunc) { runModel(t, open, true) }},
}

// Run runs the conformance subtests against the stores open makes.
func Run(t *testing.T, open OpenFunc) {
	for _, st := range conformance {
		t.Run(st.name, func(t *testing.T) { st.run(t, open) })
	}
}

// RunPersistent runs Run, then the subtests of persistent stores: what was
// written (records, counts, the expiry index) and a half-finished scan's
// cursor survive Close and reopening the same directory.
func RunPersistent(t *testing.T, open OpenFunc) {
	Run(t, open)
	for _, st := range persistence {
		t.Run("Persist/"+st.name, func(t *testing.T) { st.run(t, open) })
	}
}

// fixture is one subtest's store, clock and random source.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	open   OpenFunc
	dir    string
	opts   store.Options // as passed to open
	limits store.Limits  // with defaults filled in
	clock  *Clock
	rng    *rand.Rand
	s      store.Store
}

// newFixture opens a fresh store with the given limits (zero fields take
// their defaults) in a new directory, closed when the test ends.
func newFixture(t *testing.T, open OpenFunc, limits store.Limits) *fixture {
	t.Helper()
	clock := NewClock(Start)
	f := &fixture{
		t:     t,
		ctx:   t.Context(),
		open:  open,
		dir:   t.TempDir(),
		clock: clock,
		rng:   NewRand(t),
		opts: store.Options{
			Limits: limits,
			Now:    clock.Now,
			Logger: slog.New(slog.DiscardHandler),
		},
	}
	f.limits = limits
	f.limits.EnsureDefaults()
	f.s = f.reopen()
	return f
}

// reopen opens the fixture's directory again, registering its Close.
func (f *fixture) reopen() store.Store {
	f.t.Helper()
	s := f.open(f.t, f.dir, f.opts)
	if s == nil {
		f.t.Fatal("OpenFunc returned a nil store")
	}
	f.t.Cleanup(func() {
		if err := s.Close(); err != nil {
			f.t.Errorf("Close: %v", err)
		}
	})
	return s
}
