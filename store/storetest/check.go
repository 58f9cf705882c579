package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// posOf returns the scan position of a provider record.
func posOf(r store.ProviderRecord) store.Position {
	return store.Position{Key: record.KadKeyOf(r.Key), Provider: r.Provider}
}

// valuePos returns the scan position of a value record.
func valuePos(r store.ValueRecord) store.Position {
	return store.Position{Key: record.KadKeyOf(r.Key)}
}

// sortProviders sorts records in scan order, which for one key is the order
// of Providers.
func sortProviders(rs []store.ProviderRecord) {
	slices.SortFunc(rs, func(a, b store.ProviderRecord) int { return posOf(a).Compare(posOf(b)) })
}

func sortValues(rs []store.ValueRecord) {
	slices.SortFunc(rs, func(a, b store.ValueRecord) int { return valuePos(a).Compare(valuePos(b)) })
}

func fmtProvider(r store.ProviderRecord) string {
	return fmt.Sprintf("{key %x… kad %.8s… provider …%s addrs %v expires %s}",
		r.Key[:min(len(r.Key), 6)], record.KadKeyOf(r.Key), shortPeer(r.Provider), r.Addrs, fmtTime(r.Expires))
}

func fmtValue(r store.ValueRecord) string {
	return fmt.Sprintf("{key %q kad %.8s… value %x publisher …%s received %s expires %s}",
		r.Key, record.KadKeyOf(r.Key), r.Value, shortPeer(r.Publisher), fmtTime(r.Received), fmtTime(r.Expires))
}

func shortPeer(p interface{ String() string }) string {
	s := p.String()
	return s[max(0, len(s)-6):]
}

// fmtTime shows a time relative to Start, which reads better than dates.
func fmtTime(t time.Time) string {
	return "Start" + fmt.Sprintf("%+v", t.Sub(Start))
}

// diffProviders describes how got differs from want, both in order; "" if
// they are equal.
func diffProviders(got, want []store.ProviderRecord) string {
	return diffRecords(got, want, store.ProviderRecord.Equal, fmtProvider)
}

// diffValues describes how got differs from want, both in order; "" if they
// are equal.
func diffValues(got, want []store.ValueRecord) string {
	return diffRecords(got, want, store.ValueRecord.Equal, fmtValue)
}

func diffRecords[R any](got, want []R, equal func(R, R) bool, format func(R) string) string {
	if slices.EqualFunc(got, want, equal) {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "got %d records, want %d:", len(got), len(want))
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			fmt.Fprintf(&b, "\n  [%d] missing, want %s", i, format(want[i]))
		case i >= len(want):
			fmt.Fprintf(&b, "\n  [%d] extra %s", i, format(got[i]))
		case !equal(got[i], want[i]):
			fmt.Fprintf(&b, "\n  [%d] got  %s\n  [%d] want %s", i, format(got[i]), i, format(want[i]))
		}
	}
	return b.String()
}

// scanned is the outcome of a whole scan.
type scanned struct {
	providers []store.ProviderRecord
	values    []store.ValueRecord
	pages     int
	next      store.Cursor // Next of the last page read (nil when complete)
}

// errInvariant marks a page that breaks the scan contract.
var errInvariant = errors.New("scan contract broken")

// maxScanPages stops a scan that never ends.
const maxScanPages = 200_000

// scan reads the pages of a scan from opts.After, at most maxPages of them (0:
// until the end), checking the page invariants: at most Limit records, each
// after the cursor, live at now, in the scan's region and of its peer, in
// strictly increasing scan order, none after Next; Next strictly after the
// cursor. A broken invariant gives an error matching errInvariant.
func scan(ctx context.Context, s store.Store, opts store.ScanOptions, limits store.Limits, now time.Time, maxPages int) (scanned, error) {
	var out scanned
	var prev *store.Position // the cursor's position, then the last record's
	if opts.After != nil {
		p, err := opts.After.Decode(opts.Kind)
		if err == nil {
			prev = &p
		}
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = store.DefaultScanLimit
	}
	limit = min(limit, store.MaxScanLimit)
	for {
		if out.pages == maxScanPages {
			return out, fmt.Errorf("%w: no end after %d pages", errInvariant, out.pages)
		}
		page, err := s.Scan(ctx, opts)
		if err != nil {
			return out, err
		}
		out.pages++
		broken := func(format string, args ...any) (scanned, error) {
			return out, fmt.Errorf("%w: page %d: %s", errInvariant, out.pages, fmt.Sprintf(format, args...))
		}
		if page.Len() > limit {
			return broken("%d records, limit %d", page.Len(), limit)
		}
		if opts.Kind == store.Providers && len(page.Values) > 0 || opts.Kind == store.Values && len(page.Providers) > 0 {
			return broken("records of the other kind")
		}
		cursor := prev
		check := func(pos store.Position, expires time.Time, peerOK bool, desc string) error {
			switch {
			case prev != nil && pos.Compare(*prev) <= 0:
				return fmt.Errorf("%w: page %d: %s not after %v/%s", errInvariant, out.pages, desc, pos.Key, shortPeer(pos.Provider))
			case !opts.Region.Contains(pos.Key):
				return fmt.Errorf("%w: page %d: %s outside region %v", errInvariant, out.pages, desc, opts.Region)
			case !peerOK:
				return fmt.Errorf("%w: page %d: %s not of peer %s", errInvariant, out.pages, desc, opts.Peer)
			case !limits.Live(expires, now):
				return fmt.Errorf("%w: page %d: %s not live at %s", errInvariant, out.pages, desc, fmtTime(now))
			}
			p := pos
			prev = &p
			return nil
		}
		for _, r := range page.Providers {
			if err := check(posOf(r), r.Expires, opts.Peer == "" || r.Provider == opts.Peer, fmtProvider(r)); err != nil {
				return out, err
			}
		}
		for _, r := range page.Values {
			if err := check(valuePos(r), r.Expires, opts.Peer == "" || r.Publisher == opts.Peer, fmtValue(r)); err != nil {
				return out, err
			}
		}
		out.providers = append(out.providers, page.Providers...)
		out.values = append(out.values, page.Values...)
		out.next = page.Next
		if page.Next == nil {
			return out, nil
		}
		next, err := page.Next.Decode(opts.Kind)
		if err != nil {
			return broken("Next does not decode: %v", err)
		}
		if prev != nil && next.Compare(*prev) < 0 {
			return broken("Next %v/%s before the last record", next.Key, shortPeer(next.Provider))
		}
		if cursor != nil && next.Compare(*cursor) <= 0 {
			return broken("Next %v/%s does not advance", next.Key, shortPeer(next.Provider))
		}
		prev = &next
		opts.After = slices.Clone(page.Next)
		if maxPages > 0 && out.pages == maxPages {
			return out, nil
		}
	}
}

// wantErr reports an error unless err matches target.
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// Helpers on the fixture's store; each fails the test on an unexpected error.

func (f *fixture) now() time.Time { return f.clock.Now() }

func (f *fixture) peer() peer.ID { return RandomPeer(f.rng) }

func (f *fixture) key() []byte { return RandomKey(f.rng) }

// newProvider returns a record of p for key with random addresses, expiring
// ttl from now.
func (f *fixture) newProvider(key []byte, p peer.ID, ttl time.Duration) store.ProviderRecord {
	return NewProviderRecord(f.rng, key, p, f.now().Add(ttl))
}

// newValue returns a value record for key with a random value, received now
// and expiring ttl from now.
func (f *fixture) newValue(key string, publisher peer.ID, ttl time.Duration) store.ValueRecord {
	return NewValueRecord(f.rng, []byte(key), publisher, f.now(), f.now().Add(ttl))
}

func (f *fixture) put(rs ...store.ValueRecord) {
	f.t.Helper()
	for _, r := range rs {
		if err := f.s.PutValue(f.ctx, r); err != nil {
			f.t.Fatalf("PutValue(%s): %v", fmtValue(r), err)
		}
	}
}

func (f *fixture) add(rs ...store.ProviderRecord) {
	f.t.Helper()
	if err := f.s.AddProviders(f.ctx, rs...); err != nil {
		f.t.Fatalf("AddProviders(%d records): %v", len(rs), err)
	}
}

func (f *fixture) get(key []byte) store.ValueRecord {
	f.t.Helper()
	r, err := f.s.GetValue(f.ctx, key)
	if err != nil {
		f.t.Fatalf("GetValue(%q): %v", key, err)
	}
	return r
}

// wantValue checks GetValue returns want.
func (f *fixture) wantValue(want store.ValueRecord) {
	f.t.Helper()
	got, err := f.s.GetValue(f.ctx, want.Key)
	switch {
	case err != nil:
		f.t.Errorf("GetValue(%q): %v, want %s", want.Key, err, fmtValue(want))
	case !got.Equal(want):
		f.t.Errorf("GetValue(%q):\n got  %s\n want %s", want.Key, fmtValue(got), fmtValue(want))
	}
}

// wantNoValue checks GetValue returns ErrNotFound.
func (f *fixture) wantNoValue(key []byte) {
	f.t.Helper()
	got, err := f.s.GetValue(f.ctx, key)
	if !errors.Is(err, store.ErrNotFound) {
		f.t.Errorf("GetValue(%q) = %s, %v; want ErrNotFound", key, fmtValue(got), err)
	}
}

// wantProviders checks Providers(key, limit) returns want (in any order:
// want is sorted here).
func (f *fixture) wantProviders(key []byte, limit int, want ...store.ProviderRecord) {
	f.t.Helper()
	got, err := f.s.Providers(f.ctx, key, limit)
	if err != nil {
		f.t.Fatalf("Providers(%x, %d): %v", key, limit, err)
	}
	want = slices.Clone(want)
	sortProviders(want)
	if d := diffProviders(got, want); d != "" {
		f.t.Errorf("Providers(%x, %d): %s", key, limit, d)
	}
}

func (f *fixture) stats() store.Stats {
	f.t.Helper()
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.t.Fatalf("Stats: %v", err)
	}
	return st
}

func (f *fixture) wantStats(providers, values int64) {
	f.t.Helper()
	st := f.stats()
	if st.ProviderRecords != providers || st.ValueRecords != values {
		f.t.Errorf("Stats: %d provider records, %d value records; want %d, %d",
			st.ProviderRecords, st.ValueRecords, providers, values)
	}
	if st.DiskBytes < 0 {
		f.t.Errorf("Stats: DiskBytes %d < 0", st.DiskBytes)
	}
}

func (f *fixture) expire(now time.Time, limit int) int {
	f.t.Helper()
	n, err := f.s.Expire(f.ctx, now, limit)
	if err != nil {
		f.t.Fatalf("Expire(%s, %d): %v", fmtTime(now), limit, err)
	}
	return n
}

func (f *fixture) wantExpire(now time.Time, limit, want int) {
	f.t.Helper()
	if n := f.expire(now, limit); n != want {
		f.t.Errorf("Expire(%s, %d) removed %d records, want %d", fmtTime(now), limit, n, want)
	}
}

// scan runs a whole scan, failing the test on an error or broken invariant.
func (f *fixture) scan(opts store.ScanOptions) scanned {
	f.t.Helper()
	res, err := scan(f.ctx, f.s, opts, f.limits, f.now(), 0)
	if err != nil {
		f.t.Fatalf("Scan(%s): %v", fmtScan(opts), err)
	}
	return res
}

// wantScan checks a whole scan returns exactly want (sorted here).
func (f *fixture) wantScanProviders(opts store.ScanOptions, want []store.ProviderRecord) {
	f.t.Helper()
	opts.Kind = store.Providers
	want = slices.Clone(want)
	sortProviders(want)
	if d := diffProviders(f.scan(opts).providers, want); d != "" {
		f.t.Errorf("Scan(%s): %s", fmtScan(opts), d)
	}
}

func (f *fixture) wantScanValues(opts store.ScanOptions, want []store.ValueRecord) {
	f.t.Helper()
	opts.Kind = store.Values
	want = slices.Clone(want)
	sortValues(want)
	if d := diffValues(f.scan(opts).values, want); d != "" {
		f.t.Errorf("Scan(%s): %s", fmtScan(opts), d)
	}
}

func fmtScan(o store.ScanOptions) string {
	s := fmt.Sprintf("%v region %v limit %d", o.Kind, o.Region, o.Limit)
	if o.Peer != "" {
		s += " peer …" + shortPeer(o.Peer)
	}
	if o.After != nil {
		s += fmt.Sprintf(" after %x", []byte(o.After))
	}
	return s
}

// filter returns the elements of s for which keep is true.
func filter[E any](s []E, keep func(E) bool) []E {
	var out []E
	for _, e := range s {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}
