package storetest

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

// OpsEnv names the environment variable that sets how many operations the
// model test runs (default 2000, or 300 with -short).
const OpsEnv = "STORETEST_MODEL_OPS"

// modelLimits are small, so that a short random run reaches every limit.
var modelLimits = store.Limits{
	MaxKeySize:            40,
	MaxValueSize:          32,
	MaxAddrs:              2,
	MaxProvidersPerKey:    3,
	MaxTTL:                time.Hour,
	MaxRecords:            30,
	MaxRecordsPerProvider: 5,
}

// answer is what one operation returned, in a form two stores' answers can
// be compared in.
type answer struct {
	err       error
	providers []store.ProviderRecord
	values    []store.ValueRecord
	counts    []int64
}

// inputErrors are the errors whose identity the model test compares.
var inputErrors = []error{
	store.ErrEmptyKey, store.ErrKeyTooLarge, store.ErrInvalidPeer, store.ErrValueTooLarge,
	store.ErrTooManyAddrs, store.ErrInvalidAddr, store.ErrExpired, store.ErrTTLTooLong, store.ErrBadCursor,
	store.ErrBadScan, store.ErrNotFound,
}

// capacityErrors are compared as one class: which limit a write that breaks
// several reports is the backend's choice.
var capacityErrors = []error{store.ErrTooManyProviders, store.ErrStoreFull, store.ErrProviderFull}

func errorClass(err error) string {
	if err == nil {
		return "no error"
	}
	for _, e := range inputErrors {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	for _, e := range capacityErrors {
		if errors.Is(err, e) {
			return "a capacity error"
		}
	}
	return "unexpected error: " + err.Error()
}

// diff describes how the backend's answer a differs from the model's m.
func (a answer) diff(m answer) string {
	if ca, cm := errorClass(a.err), errorClass(m.err); ca != cm || strings.HasPrefix(ca, "unexpected") {
		return fmt.Sprintf("backend: %v\nmodel:   %v", a.err, m.err)
	}
	if d := diffProviders(a.providers, m.providers); d != "" {
		return "backend (got) and model (want) differ: " + d
	}
	if d := diffValues(a.values, m.values); d != "" {
		return "backend (got) and model (want) differ: " + d
	}
	if !slices.Equal(a.counts, m.counts) {
		return fmt.Sprintf("backend: %v\nmodel:   %v", a.counts, m.counts)
	}
	return ""
}

// modelRun applies random operations to a backend and to memstore.
type modelRun struct {
	f         *fixture
	model     store.Store
	reopen    bool
	provKeys  [][]byte
	valueKeys [][]byte
	peers     []peer.ID
	history   []string
}

func testModel(t *testing.T, open OpenFunc) { runModel(t, open, false) }

// runModel is the metamorphic test: a seeded random sequence of operations,
// including clock moves both ways and, if reopen, closing and reopening the
// backend, applied to the backend and to memstore with the same options and
// clock, comparing every answer.
func runModel(t *testing.T, open OpenFunc, reopen bool) {
	f := newFixture(t, open, modelLimits)
	model := memstore.New(f.opts)
	t.Cleanup(func() { model.Close() })
	m := &modelRun{f: f, model: model, reopen: reopen}
	for range 8 {
		m.provKeys = append(m.provKeys, f.key())
	}
	for i := range 10 {
		m.valueKeys = append(m.valueKeys, fmt.Appendf(nil, "/test/model/%d", i))
	}
	for range 6 {
		m.peers = append(m.peers, f.peer())
	}
	ops := 2000
	if testing.Short() {
		ops = 300
	}
	if v := os.Getenv(OpsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", OpsEnv, v, err)
		}
		ops = n
	}
	steps := []struct {
		weight int
		run    func()
	}{
		{8, m.advance}, {14, m.putValue}, {8, m.getValue}, {5, m.deleteValue},
		{16, m.addProviders}, {10, m.providers}, {6, m.removeProvider},
		{8, m.scan}, {4, m.resume}, {6, m.expire}, {5, m.stats},
	}
	if reopen {
		steps = append(steps, struct {
			weight int
			run    func()
		}{1, m.reopenBackend})
	}
	total := 0
	for _, s := range steps {
		total += s.weight
	}
	for range ops {
		x := f.rng.IntN(total)
		for _, s := range steps {
			if x -= s.weight; x < 0 {
				s.run()
				break
			}
		}
	}
	// The whole state agrees at the end.
	for _, kind := range []store.Kind{store.Providers, store.Values} {
		opts := store.ScanOptions{Kind: kind, Limit: 10}
		m.compare("final scan "+fmtScan(opts), func(s store.Store) answer { return m.scanAnswer(s, opts, 0) })
	}
	m.stats()
	t.Logf("%d operations agree", ops)
}

// note records an operation for the failure report.
func (m *modelRun) note(desc string) { m.history = append(m.history, desc) }

// compare runs op on both stores and fails the test if the answers differ.
func (m *modelRun) compare(desc string, op func(s store.Store) answer) {
	m.f.t.Helper()
	m.note(desc)
	got, want := op(m.f.s), op(m.model)
	if d := got.diff(want); d != "" {
		last := m.history[max(0, len(m.history)-30):]
		m.f.t.Fatalf("operation %d at %s: %s\n%s\nthe last %d operations:\n  %s",
			len(m.history), fmtTime(m.f.now()), desc, d, len(last), strings.Join(last, "\n  "))
	}
}

func (m *modelRun) seconds(lo, hi int) time.Duration {
	return time.Duration(lo+m.f.rng.IntN(hi-lo+1)) * time.Second
}

// expiry returns an expiry for a write: mostly valid, sometimes at a bound
// or beyond one.
func (m *modelRun) expiry() time.Time {
	now, ttl := m.f.now(), modelLimits.MaxTTL
	switch x := m.f.rng.IntN(100); {
	case x < 3:
		return now
	case x < 5:
		return now.Add(-m.seconds(1, 600))
	case x < 8:
		return now.Add(ttl + m.seconds(1, 60))
	case x < 12:
		return now.Add(ttl)
	default:
		return now.Add(m.seconds(1, int(ttl/time.Second)))
	}
}

func (m *modelRun) peer() peer.ID {
	if m.f.rng.IntN(50) == 0 {
		return "not a peer"
	}
	return m.peers[m.f.rng.IntN(len(m.peers))]
}

func (m *modelRun) key(pool [][]byte) []byte {
	switch m.f.rng.IntN(50) {
	case 0:
		return nil
	case 1:
		return make([]byte, modelLimits.MaxKeySize+1)
	}
	return pool[m.f.rng.IntN(len(pool))]
}

func (m *modelRun) advance() {
	d := m.seconds(1, 300)
	switch m.f.rng.IntN(20) {
	case 0: // a jump back beyond MaxTTL: recent records now lie too far ahead
		d = -modelLimits.MaxTTL - m.seconds(0, 1800)
	case 1:
		d = -m.seconds(1, 600)
	case 2, 3:
		d = m.seconds(0, 3600)
	}
	m.f.clock.Advance(d)
	m.note(fmt.Sprintf("clock %+v to %s", d, fmtTime(m.f.now())))
}

func (m *modelRun) putValue() {
	r := store.ValueRecord{
		Key:      m.key(m.valueKeys),
		Value:    randomDigest(m.f.rng)[:m.f.rng.IntN(modelLimits.MaxValueSize+1)],
		Received: m.f.now().Add(-m.seconds(0, 60)),
		Expires:  m.expiry(),
	}
	if m.f.rng.IntN(30) == 0 {
		r.Value = make([]byte, modelLimits.MaxValueSize+1)
	}
	if m.f.rng.IntN(3) > 0 {
		r.Publisher = m.peer()
	}
	m.compare("PutValue "+fmtValue(r), func(s store.Store) answer { return answer{err: s.PutValue(m.f.ctx, r)} })
}

func (m *modelRun) getValue() {
	key := m.key(m.valueKeys)
	m.compare(fmt.Sprintf("GetValue %q", key), func(s store.Store) answer {
		r, err := s.GetValue(m.f.ctx, key)
		if err != nil {
			return answer{err: err}
		}
		return answer{values: []store.ValueRecord{r}}
	})
}

func (m *modelRun) deleteValue() {
	key := m.key(m.valueKeys)
	m.compare(fmt.Sprintf("DeleteValue %q", key), func(s store.Store) answer { return answer{err: s.DeleteValue(m.f.ctx, key)} })
}

func (m *modelRun) addProviders() {
	batch := make([]store.ProviderRecord, 1+m.f.rng.IntN(3))
	desc := make([]string, len(batch))
	for i := range batch {
		r := store.ProviderRecord{
			Key:      m.key(m.provKeys),
			Provider: m.peer(),
			Addrs:    RandomAddrs(m.f.rng, m.f.rng.IntN(modelLimits.MaxAddrs+1)),
			Expires:  m.expiry(),
		}
		if m.f.rng.IntN(40) == 0 {
			r.Addrs = RandomAddrs(m.f.rng, modelLimits.MaxAddrs+1)
		}
		batch[i], desc[i] = r, fmtProvider(r)
	}
	m.compare("AddProviders "+strings.Join(desc, ", "), func(s store.Store) answer {
		return answer{err: s.AddProviders(m.f.ctx, batch...)}
	})
}

func (m *modelRun) providers() {
	key, limit := m.key(m.provKeys), m.f.rng.IntN(6)-1
	m.compare(fmt.Sprintf("Providers %x limit %d", key, limit), func(s store.Store) answer {
		rs, err := s.Providers(m.f.ctx, key, limit)
		return answer{err: err, providers: rs}
	})
}

func (m *modelRun) removeProvider() {
	key, p := m.key(m.provKeys), m.peer()
	m.compare(fmt.Sprintf("RemoveProvider %x …%s", key, shortPeer(p)), func(s store.Store) answer {
		return answer{err: s.RemoveProvider(m.f.ctx, key, p)}
	})
}

func (m *modelRun) scanOptions() store.ScanOptions {
	rng := m.f.rng
	opts := store.ScanOptions{Kind: store.Providers, Limit: rng.IntN(6)}
	pool := m.provKeys
	if rng.IntN(2) == 0 {
		opts.Kind, pool = store.Values, m.valueKeys
	}
	if bits := rng.IntN(5); bits > 0 {
		opts.Region = record.RegionOf(record.KadKeyOf(pool[rng.IntN(len(pool))]), bits)
	}
	if rng.IntN(3) == 0 {
		opts.Peer = m.peers[rng.IntN(len(m.peers))]
	}
	return opts
}

// scanAnswer runs a scan to the end (or for maxPages pages) and checks its
// page invariants.
func (m *modelRun) scanAnswer(s store.Store, opts store.ScanOptions, maxPages int) answer {
	res, err := scan(m.f.ctx, s, opts, m.f.limits, m.f.now(), maxPages)
	return answer{err: err, providers: res.providers, values: res.values}
}

func (m *modelRun) scan() {
	opts := m.scanOptions()
	m.compare("Scan "+fmtScan(opts), func(s store.Store) answer { return m.scanAnswer(s, opts, 0) })
}

// resume reads a few pages of a scan from the backend, then resumes from its
// cursor on both stores: cursors are positions, valid in any backend.
func (m *modelRun) resume() {
	opts := m.scanOptions()
	opts.Limit = 1 + m.f.rng.IntN(3)
	head, err := scan(m.f.ctx, m.f.s, opts, m.f.limits, m.f.now(), 1+m.f.rng.IntN(3))
	if err != nil {
		m.f.t.Fatalf("operation %d: Scan %s: %v", len(m.history)+1, fmtScan(opts), err)
	}
	m.note(fmt.Sprintf("backend: Scan %s for %d pages", fmtScan(opts), head.pages))
	if head.next == nil {
		return
	}
	opts.After, opts.Limit = head.next, m.f.rng.IntN(6)
	m.compare("resume Scan "+fmtScan(opts), func(s store.Store) answer { return m.scanAnswer(s, opts, 0) })
}

func (m *modelRun) expire() {
	at := m.f.now()
	if m.f.rng.IntN(10) < 3 {
		at = at.Add(m.seconds(-5400, 5400))
	}
	limit := 0
	if m.f.rng.IntN(5) < 2 {
		limit = 1 + m.f.rng.IntN(3)
	}
	expire := func(limit int) func(s store.Store) answer {
		return func(s store.Store) answer {
			n, err := s.Expire(m.f.ctx, at, limit)
			return answer{err: err, counts: []int64{int64(n)}}
		}
	}
	m.compare(fmt.Sprintf("Expire %s limit %d", fmtTime(at), limit), expire(limit))
	if limit > 0 {
		// Which records a limited Expire removes is the backend's choice;
		// removing the rest makes the stores agree again.
		m.compare(fmt.Sprintf("Expire %s limit 0", fmtTime(at)), expire(0))
	}
}

func (m *modelRun) stats() {
	m.compare("Stats", func(s store.Store) answer {
		st, err := s.Stats(m.f.ctx)
		return answer{err: err, counts: []int64{st.ProviderRecords, st.ValueRecords}}
	})
}

func (m *modelRun) reopenBackend() {
	m.note("backend: Close and reopen")
	if err := m.f.s.Close(); err != nil {
		m.f.t.Fatalf("Close: %v", err)
	}
	m.f.s = m.f.reopen()
}
