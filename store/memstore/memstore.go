// Package memstore is the in-memory backend of the store contract: bounded,
// ordered, and the reference behaviour the conformance suite (store/storetest)
// compares every other backend with.
//
// It keeps every record in B-trees (github.com/google/btree) rather than in
// hash maps or sorted slices. A B-tree gives what the contract needs from an
// ordered index at O(log n) per operation: Scan walks keyspace order from a
// cursor without sorting anything per call, a Region is one range of the tree,
// and inserting or removing a record does not move the rest of the set, as it
// would in a sorted slice of millions of records. The indexes are:
//
//   - providers, by (Kademlia key, provider): lookups, scans and regions;
//   - byProvider, by (provider, Kademlia key): scans of one provider's records;
//   - values, by Kademlia key; byPublisher, by (publisher, Kademlia key);
//   - expiry, by (expiry, kind, position): Expire visits only what expired, from
//     the front of the index, and what lies implausibly far ahead, from its
//     back, so its cost grows with what it removes, not with what is stored.
//
// Per-key and per-provider counts are kept in maps so that the count limits
// cost O(1). Times are stored at millisecond resolution, like every persistent
// backend, so the model and the backends it is compared with agree exactly.
//
// One sync.RWMutex guards the whole store: reads (GetValue, Providers, Scan,
// Stats) share it, writes take it alone. Every operation is short and bounded
// (a scan page holds the lock for one page only), so a single lock is simpler
// than finer locking at no real cost for an in-memory store.
//
// Memory is bounded by Limits: MaxRecords (default 100 M) caps the records,
// MaxProvidersPerKey, MaxKeySize, MaxValueSize and MaxAddrs cap each record.
// Nothing survives Close.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// btreeDegree is the B-tree node degree: 32 keeps nodes around a few hundred
// bytes of pointers, a good balance of depth and copy cost for in-memory use.
const btreeDegree = 32

// scanSkipBudget bounds how many hidden (expired) records one Scan page may
// step over beyond its Limit, so a page costs a bounded amount of work even
// when a large expired range awaits Expire. A page cut short by it has
// fewer records than Limit and a non-nil Next, as the contract allows.
const scanSkipBudget = 4096

// Store is an in-memory record store. It is safe for concurrent use.
type Store struct {
	limits store.Limits
	now    func() time.Time
	log    *slog.Logger

	mu     sync.RWMutex
	closed bool

	providers   *btree.BTreeG[*provEntry] // by (Kademlia key, provider)
	byProvider  *btree.BTreeG[*provEntry] // by (provider, Kademlia key)
	values      *btree.BTreeG[*valEntry]  // by Kademlia key
	byPublisher *btree.BTreeG[*valEntry]  // by (publisher, Kademlia key), publisher set only
	expiry      *btree.BTreeG[expItem]

	keyProviders    map[record.KadKey]int // stored providers per key
	providerRecords map[peer.ID]int64     // stored records per provider
}

var _ store.Store = (*Store)(nil)

// provEntry is one stored provider record; the same pointer sits in
// providers and byProvider, so a refresh updates both at once. pos never
// changes while the entry is stored (it is the trees' ordering key).
type provEntry struct {
	pos store.Position
	rec store.ProviderRecord
}

// valEntry is one stored value record. rec.Publisher orders byPublisher, so
// it changes only while the entry is out of that tree.
type valEntry struct {
	kk  record.KadKey
	rec store.ValueRecord
}

// expItem is an entry of the expiry index: exactly one per stored record,
// carrying the record's current expiry. A refresh replaces it, so no stale
// entry can make Expire remove a refreshed record.
type expItem struct {
	ms   int64
	kind store.Kind
	pos  store.Position
}

// New returns an empty store with the given options; zero fields take their
// defaults.
func New(opts store.Options) *Store {
	opts.EnsureDefaults()
	return &Store{
		limits: opts.Limits,
		now:    opts.Now,
		log:    opts.Logger,
		providers: btree.NewG(btreeDegree, func(a, b *provEntry) bool {
			return a.pos.Compare(b.pos) < 0
		}),
		byProvider: btree.NewG(btreeDegree, func(a, b *provEntry) bool {
			if c := strings.Compare(string(a.pos.Provider), string(b.pos.Provider)); c != 0 {
				return c < 0
			}
			return bytes.Compare(a.pos.Key[:], b.pos.Key[:]) < 0
		}),
		values: btree.NewG(btreeDegree, func(a, b *valEntry) bool {
			return bytes.Compare(a.kk[:], b.kk[:]) < 0
		}),
		byPublisher: btree.NewG(btreeDegree, func(a, b *valEntry) bool {
			if c := strings.Compare(string(a.rec.Publisher), string(b.rec.Publisher)); c != 0 {
				return c < 0
			}
			return bytes.Compare(a.kk[:], b.kk[:]) < 0
		}),
		expiry: btree.NewG(btreeDegree, func(a, b expItem) bool {
			if a.ms != b.ms {
				return a.ms < b.ms
			}
			if a.kind != b.kind {
				return a.kind < b.kind
			}
			return a.pos.Compare(b.pos) < 0
		}),
		keyProviders:    make(map[record.KadKey]int),
		providerRecords: make(map[peer.ID]int64),
	}
}

// millis drops what the millisecond resolution of stored times cannot keep.
func millis(t time.Time) time.Time { return record.TimeFromMillis(t.UnixMilli()) }

// checkOpen returns ErrClosed after Close; the caller holds mu.
func (s *Store) checkOpen() error {
	if s.closed {
		return store.ErrClosed
	}
	return nil
}

// PutValue stores r, replacing any record with the same key.
func (s *Store) PutValue(ctx context.Context, r store.ValueRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r = r.Clone()
	r.Received, r.Expires = millis(r.Received), millis(r.Expires)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.limits.CheckValue(r, s.now()); err != nil {
		return err
	}
	kk := record.KadKeyOf(r.Key)
	if e, ok := s.values.Get(&valEntry{kk: kk}); ok {
		s.unindexValue(e)
		e.rec = r
		s.indexValue(e)
		return nil
	}
	if err := s.checkRecords(1); err != nil {
		return err
	}
	e := &valEntry{kk: kk, rec: r}
	s.values.ReplaceOrInsert(e)
	s.indexValue(e)
	return nil
}

// indexValue adds e to the secondary indexes.
func (s *Store) indexValue(e *valEntry) {
	if e.rec.Publisher != "" {
		s.byPublisher.ReplaceOrInsert(e)
	}
	s.expiry.ReplaceOrInsert(expItem{ms: e.rec.Expires.UnixMilli(), kind: store.Values, pos: store.Position{Key: e.kk}})
}

// unindexValue removes e from the secondary indexes.
func (s *Store) unindexValue(e *valEntry) {
	if e.rec.Publisher != "" {
		s.byPublisher.Delete(e)
	}
	s.expiry.Delete(expItem{ms: e.rec.Expires.UnixMilli(), kind: store.Values, pos: store.Position{Key: e.kk}})
}

// checkRecords reports whether n new records fit under MaxRecords.
func (s *Store) checkRecords(n int64) error {
	limit := s.limits.MaxRecords
	if stored := int64(s.providers.Len() + s.values.Len()); limit > 0 && stored+n > limit {
		return fmt.Errorf("%w: %d records stored, %d new, limit %d", store.ErrStoreFull, stored, n, limit)
	}
	return nil
}

// GetValue returns the live record with the key, or ErrNotFound.
func (s *Store) GetValue(ctx context.Context, key []byte) (store.ValueRecord, error) {
	if err := ctx.Err(); err != nil {
		return store.ValueRecord{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkOpen(); err != nil {
		return store.ValueRecord{}, err
	}
	if err := s.limits.CheckKey(key); err != nil {
		return store.ValueRecord{}, err
	}
	e, ok := s.values.Get(&valEntry{kk: record.KadKeyOf(key)})
	if !ok || !s.limits.Live(e.rec.Expires, s.now()) {
		return store.ValueRecord{}, store.ErrNotFound
	}
	return e.rec.Clone(), nil
}

// DeleteValue removes the record with the key, if any.
func (s *Store) DeleteValue(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.limits.CheckKey(key); err != nil {
		return err
	}
	if e, ok := s.values.Get(&valEntry{kk: record.KadKeyOf(key)}); ok {
		s.deleteValue(e)
	}
	return nil
}

func (s *Store) deleteValue(e *valEntry) {
	s.unindexValue(e)
	s.values.Delete(e)
}

// AddProviders stores the records as one atomic batch: every record is
// checked, and the count limits are checked for the batch as a whole, before
// anything is stored. Records of the batch with the same key and provider are
// applied in order (the last one wins) and count once.
func (s *Store) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	batch := make([]store.ProviderRecord, len(recs))
	for i, r := range recs {
		r = r.Clone()
		r.Expires = millis(r.Expires)
		batch[i] = r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	now := s.now()
	for i, r := range batch {
		if err := s.limits.CheckProvider(r, now); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	if err := s.checkProviderCounts(batch); err != nil {
		return err
	}
	for _, r := range batch {
		pos := store.Position{Key: record.KadKeyOf(r.Key), Provider: r.Provider}
		if e, ok := s.providers.Get(&provEntry{pos: pos}); ok {
			s.expiry.Delete(expItem{ms: e.rec.Expires.UnixMilli(), kind: store.Providers, pos: pos})
			e.rec = r
		} else {
			e = &provEntry{pos: pos, rec: r}
			s.providers.ReplaceOrInsert(e)
			s.byProvider.ReplaceOrInsert(e)
			s.keyProviders[pos.Key]++
			s.providerRecords[pos.Provider]++
		}
		s.expiry.ReplaceOrInsert(expItem{ms: r.Expires.UnixMilli(), kind: store.Providers, pos: pos})
	}
	return nil
}

// checkProviderCounts checks the count limits for the new records of a batch
// (those whose key and provider are not stored yet). Limits are checked in a
// fixed order: per key, per provider, then the whole store.
func (s *Store) checkProviderCounts(batch []store.ProviderRecord) error {
	var added int64
	perKey := make(map[record.KadKey]int)
	perProvider := make(map[peer.ID]int64)
	seen := make(map[store.Position]bool, len(batch))
	for _, r := range batch {
		pos := store.Position{Key: record.KadKeyOf(r.Key), Provider: r.Provider}
		if seen[pos] || s.providers.Has(&provEntry{pos: pos}) {
			continue
		}
		seen[pos] = true
		added++
		perKey[pos.Key]++
		perProvider[pos.Provider]++
	}
	if added == 0 {
		return nil
	}
	if limit := s.limits.MaxProvidersPerKey; limit > 0 {
		for kk, n := range perKey {
			if have := s.keyProviders[kk]; have+n > limit {
				return fmt.Errorf("%w: key %.16s has %d, %d new, limit %d", store.ErrTooManyProviders, kk, have, n, limit)
			}
		}
	}
	if limit := s.limits.MaxRecordsPerProvider; limit > 0 {
		for p, n := range perProvider {
			if have := s.providerRecords[p]; have+n > limit {
				return fmt.Errorf("%w: %s has %d, %d new, limit %d", store.ErrProviderFull, p, have, n, limit)
			}
		}
	}
	return s.checkRecords(added)
}

// Providers returns at most limit live providers of key, in provider ID order.
func (s *Store) Providers(ctx context.Context, key []byte, limit int) ([]store.ProviderRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := s.limits.CheckKey(key); err != nil {
		return nil, err
	}
	if capacity := s.limits.MaxProvidersPerKey; capacity > 0 && (limit <= 0 || limit > capacity) {
		limit = capacity
	}
	now := s.now()
	kk := record.KadKeyOf(key)
	var out []store.ProviderRecord
	s.providers.AscendGreaterOrEqual(&provEntry{pos: store.Position{Key: kk}}, func(e *provEntry) bool {
		if e.pos.Key != kk || (limit > 0 && len(out) == limit) {
			return false
		}
		if s.limits.Live(e.rec.Expires, now) {
			out = append(out, e.rec.Clone())
		}
		return true
	})
	return out, nil
}

// RemoveProvider removes the record of provider p for key, if any.
func (s *Store) RemoveProvider(ctx context.Context, key []byte, p peer.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.limits.CheckKey(key); err != nil {
		return err
	}
	if err := store.CheckPeer(p); err != nil {
		return err
	}
	if e, ok := s.providers.Get(&provEntry{pos: store.Position{Key: record.KadKeyOf(key), Provider: p}}); ok {
		s.deleteProvider(e)
	}
	return nil
}

func (s *Store) deleteProvider(e *provEntry) {
	s.providers.Delete(e)
	s.byProvider.Delete(e)
	s.expiry.Delete(expItem{ms: e.rec.Expires.UnixMilli(), kind: store.Providers, pos: e.pos})
	if s.keyProviders[e.pos.Key]--; s.keyProviders[e.pos.Key] <= 0 {
		delete(s.keyProviders, e.pos.Key)
	}
	if s.providerRecords[e.pos.Provider]--; s.providerRecords[e.pos.Provider] <= 0 {
		delete(s.providerRecords, e.pos.Provider)
	}
}

// Scan returns one page of live records in keyspace order, after opts.After.
func (s *Store) Scan(ctx context.Context, opts store.ScanOptions) (store.Page, error) {
	if err := ctx.Err(); err != nil {
		return store.Page{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkOpen(); err != nil {
		return store.Page{}, err
	}
	opts, after, err := store.CheckScan(opts)
	if err != nil {
		return store.Page{}, err
	}
	w := newWalk(opts, after, s.limits, s.now())
	var page store.Page
	if opts.Kind == store.Providers {
		visit := func(e *provEntry) bool {
			return w.visit(e.pos, e.rec.Expires, func() { page.Providers = append(page.Providers, e.rec.Clone()) })
		}
		if opts.Peer == "" {
			s.providers.AscendGreaterOrEqual(&provEntry{pos: w.start}, visit)
		} else {
			pivot := &provEntry{pos: store.Position{Key: w.start.Key, Provider: opts.Peer}}
			s.byProvider.AscendGreaterOrEqual(pivot, func(e *provEntry) bool {
				return e.pos.Provider == opts.Peer && visit(e)
			})
		}
	} else {
		visit := func(e *valEntry) bool {
			return w.visit(store.Position{Key: e.kk}, e.rec.Expires, func() { page.Values = append(page.Values, e.rec.Clone()) })
		}
		if opts.Peer == "" {
			s.values.AscendGreaterOrEqual(&valEntry{kk: w.start.Key}, visit)
		} else {
			pivot := &valEntry{kk: w.start.Key, rec: store.ValueRecord{Publisher: opts.Peer}}
			s.byPublisher.AscendGreaterOrEqual(pivot, func(e *valEntry) bool {
				return e.rec.Publisher == opts.Peer && visit(e)
			})
		}
	}
	if w.more {
		page.Next = store.NewCursor(opts.Kind, w.last)
	}
	return page, nil
}

// walk is the state of one scan page over an index in scan order.
type walk struct {
	limits   store.Limits
	now      time.Time
	start    store.Position  // where to seek
	after    *store.Position // exclusive lower bound, from the cursor
	end      record.KadKey   // exclusive upper bound of the region...
	bounded  bool            // ...if the region does not run to the end
	limit    int             // records in the page at most
	budget   int             // entries examined at most
	returned int
	examined int
	last     store.Position // the last entry examined
	more     bool           // an entry in range remains after last
}

func newWalk(opts store.ScanOptions, after *store.Position, limits store.Limits, now time.Time) *walk {
	w := &walk{
		limits: limits,
		now:    now,
		start:  store.Position{Key: opts.Region.Start()},
		limit:  opts.Limit,
		budget: opts.Limit + scanSkipBudget,
	}
	w.end, w.bounded = opts.Region.End()
	if after != nil && after.Compare(w.start) >= 0 {
		w.start, w.after = *after, after
	}
	return w
}

// visit considers the entry at pos, calling add if it belongs in the page, and
// reports whether the walk goes on.
func (w *walk) visit(pos store.Position, expires time.Time, add func()) bool {
	if w.after != nil && pos.Compare(*w.after) <= 0 {
		return true
	}
	if w.bounded && bytes.Compare(pos.Key[:], w.end[:]) >= 0 {
		return false
	}
	if w.returned == w.limit || w.examined == w.budget {
		w.more = true
		return false
	}
	w.examined++
	w.last = pos
	if w.limits.Live(expires, w.now) {
		w.returned++
		add()
	}
	return true
}

// Expire removes up to limit records whose expiry is at or before now, or
// more than 2×MaxTTL after now. limit <= 0 means no limit.
func (s *Store) Expire(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	var victims []expItem
	full := func() bool { return limit > 0 && len(victims) >= limit }
	// Expired records sit at the front of the index, implausibly distant ones
	// at its back; live records, in between, are never visited.
	s.expiry.Ascend(func(it expItem) bool {
		if full() || record.TimeFromMillis(it.ms).After(now) {
			return false
		}
		victims = append(victims, it)
		return true
	})
	s.expiry.Descend(func(it expItem) bool {
		if full() || s.limits.Live(record.TimeFromMillis(it.ms), now) || !record.TimeFromMillis(it.ms).After(now) {
			return false
		}
		victims = append(victims, it)
		return true
	})
	removed := 0
	for _, it := range victims {
		// Every index entry names a stored record with that expiry (writes
		// replace the entry of a record they refresh); one that does not is a
		// bug, reported and dropped rather than counted or crashing the node.
		if it.kind == store.Providers {
			if e, ok := s.providers.Get(&provEntry{pos: it.pos}); ok && e.rec.Expires.UnixMilli() == it.ms {
				s.deleteProvider(e)
				removed++
				continue
			}
		} else if e, ok := s.values.Get(&valEntry{kk: it.pos.Key}); ok && e.rec.Expires.UnixMilli() == it.ms {
			s.deleteValue(e)
			removed++
			continue
		}
		s.log.Error("memstore: stale expiry index entry", "kind", it.kind, "key", it.pos.Key, "provider", it.pos.Provider, "expires", it.ms)
		s.expiry.Delete(it)
	}
	return removed, nil
}

// Stats returns counts of what is stored, expired records not yet removed
// included. DiskBytes is always 0.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	if err := ctx.Err(); err != nil {
		return store.Stats{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkOpen(); err != nil {
		return store.Stats{}, err
	}
	return store.Stats{
		ProviderRecords: int64(s.providers.Len()),
		ValueRecords:    int64(s.values.Len()),
	}, nil
}

// Close drops every record. Later calls return ErrClosed; Close itself is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.providers, s.byProvider, s.values, s.byPublisher, s.expiry = nil, nil, nil, nil, nil
	s.keyProviders, s.providerRecords = nil, nil
	return nil
}
