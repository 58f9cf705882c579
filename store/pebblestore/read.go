package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// Readers take no lock but closeMu (shared): each call reads through its own
// pebble iterator, a consistent view of the database as of its creation.

// scanSkipBudget bounds how many entries one Scan page may step over (expired,
// corrupt, or of another publisher) beyond its Limit, as memstore does, so a
// page costs bounded work. A page cut short by it has fewer records than
// Limit and a non-nil Next.
const scanSkipBudget = 4096

// filterBudget bounds how many records of other providers one page of a
// scan restricted to a peer without a peer index steps over. They are told
// apart by their keys, without decoding, so the budget is larger.
const filterBudget = 1 << 16

// ctxCheckEvery is how many entries a loop handles between checks of its
// context.
const ctxCheckEvery = 1024

// GetValue returns the live record with the key, or ErrNotFound.
func (s *Store) GetValue(ctx context.Context, key []byte) (_ store.ValueRecord, err error) {
	if err := s.acquire(ctx); err != nil {
		return store.ValueRecord{}, err
	}
	defer s.release()
	defer s.recoverFatal(&err, false)
	if err := s.limits.CheckKey(key); err != nil {
		return store.ValueRecord{}, err
	}
	k := record.KadKeyOf(key)
	var kbuf [1 + kk]byte
	v, closer, err := s.db.Get(valueKey(kbuf[:0], &k))
	if errors.Is(err, pebble.ErrNotFound) {
		return store.ValueRecord{}, store.ErrNotFound
	}
	if err != nil {
		return store.ValueRecord{}, s.readErr("value "+k.String(), err)
	}
	defer closer.Close()
	r, _, err := decodeValue(nil, v)
	if err != nil {
		s.log.Error("pebblestore: corrupt value record", "kadkey", k.String(), "error", err)
		return store.ValueRecord{}, fmt.Errorf("%w: value %x: %w", store.ErrCorrupt, key, err)
	}
	if !s.limits.Live(r.Expires, s.now()) {
		return store.ValueRecord{}, store.ErrNotFound
	}
	return r, nil
}

// Providers returns at most limit live providers of key, in provider ID
// order: one prefix seek.
func (s *Store) Providers(ctx context.Context, key []byte, limit int) (_ []store.ProviderRecord, err error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	defer s.recoverFatal(&err, false)
	if err := s.limits.CheckKey(key); err != nil {
		return nil, err
	}
	if capacity := s.limits.MaxProvidersPerKey; capacity > 0 && (limit <= 0 || limit > capacity) {
		limit = capacity
	}
	now := s.now()
	k := record.KadKeyOf(key)
	// Many lookups are for keys nobody provides: the bloom filters of L6,
	// where most records live, answer those without a data block.
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	var kbuf [provPrefixLen]byte
	out := []store.ProviderRecord{}
	err = s.eachProvider(it, provPrefix(kbuf[:0], &k), func() { out = out[:0] }, func(p, v []byte) bool {
		r, err := decodeProviderFast(s.addrs, p, v)
		if err != nil {
			s.corrupt(store.Providers, provKey(nil, &k, peer.ID(p)), err)
			return true
		}
		if s.limits.Live(r.Expires, now) {
			out = append(out, r)
		}
		return limit <= 0 || len(out) < limit
	})
	if err != nil {
		return nil, s.readErr("providers of "+k.String(), err)
	}
	return out, nil
}

// eachProvider calls f with the provider and stored value of each record
// under prefix (p|kadkey), until f returns false, through a prefix seek on
// it, which the bloom filters answer. If that meets damage it reads again,
// after reset, through an iterator that does not use the filters: a
// damaged filter or index block then costs nothing (pebble reports the
// file all the same); only a damaged data block holding the key does.
//
// A key in the range of a file known to be damaged goes the second way at
// once: pebble's error for a damaged block costs more than the read.
func (s *Store) eachProvider(it *pebble.Iterator, prefix []byte, reset func(), f func(p, v []byte) bool) error {
	if !s.faults.inDamaged(prefix) {
		err := walkProviders(it, it.SeekPrefixGE(prefix), f)
		if err == nil || !pebble.IsCorruptionError(err) {
			return err
		}
		reset()
	}
	plain, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer plain.Close()
	return walkProviders(plain, plain.First(), f)
}

// walkProviders is eachProvider's loop, from it positioned (valid).
func walkProviders(it *pebble.Iterator, valid bool, f func(p, v []byte) bool) error {
	for ; valid; valid = it.Next() {
		_, p, ok := parseProvKey(it.Key())
		if !ok {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if !f(p, v) {
			return nil
		}
	}
	return it.Error()
}

// corrupt reports a stored record that does not decode.
func (s *Store) corrupt(kind store.Kind, key []byte, err error) {
	s.log.Error("pebblestore: corrupt record skipped", "kind", kind.String(), "key", fmt.Sprintf("%x", key), "error", err)
}

// Scan returns one page of live records in keyspace order, after opts.After.
//
// A scan walks one key range of p| or v|. A provider scan restricted to an
// indexed peer (Options.IndexedPeers) walks that peer's range of the peer
// index (o|) instead, which is in Kademlia key order too, and reads each
// record with a seek that only moves forward: it costs what the peer has,
// not what the store has. Other peer-restricted scans filter the range.
func (s *Store) Scan(ctx context.Context, opts store.ScanOptions) (_ store.Page, err error) {
	if err := s.acquire(ctx); err != nil {
		return store.Page{}, err
	}
	defer s.release()
	defer s.recoverFatal(&err, false)
	opts, after, err := store.CheckScan(opts)
	if err != nil {
		return store.Page{}, err
	}
	w := &scanWalk{s: s, ctx: ctx, opts: opts, now: s.now(), budget: opts.Limit + scanSkipBudget}
	err = w.walk(after)
	if err != nil && pebble.IsCorruptionError(err) {
		err = w.skipDamage(after, err)
	}
	if err != nil {
		return store.Page{}, err
	}
	if w.more {
		w.page.Next = store.NewCursor(opts.Kind, w.last)
	}
	return w.page, nil
}

// walk fills the page from after.
func (w *scanWalk) walk(after *store.Position) error {
	if w.opts.Kind == store.Providers && w.opts.Peer != "" && w.s.isIndexed(w.opts.Peer) {
		return w.peerProviders(after)
	}
	return w.records(after)
}

// skipDamage ends a page whose walk met damaged data (err) after the
// records it has: it finds a Kademlia key after the last entry read from
// which the same scan reads again (trying keys at distances that double,
// then bisecting), and sets the page's cursor just before it. The records
// in between cannot be read; they count as one in Page.Skipped, the read
// counts in Health, and the damaged file was logged when pebble met it.
func (w *scanWalk) skipDamage(after *store.Position, damage error) error {
	from := w.opts.Region.Start()
	if after != nil {
		from = after.Key
	}
	if w.examined > 0 || w.filtered > 0 {
		from = w.last.Key
	}
	w.page.Skipped++
	w.s.log.Warn("pebblestore: scan skips a damaged key range", "kind", w.opts.Kind.String(), "from", from.String(), "error", firstLine(damage))
	w.s.faults.corruptRead("scan", damage)

	base := new(big.Int).SetBytes(from[:])
	limit := new(big.Int).Lsh(big.NewInt(1), 256)
	if end, ok := w.opts.Region.End(); ok {
		limit.SetBytes(end[:])
	}
	// readsAt reports whether the scan reads again from base+d.
	readsAt := func(d *big.Int) (bool, error) {
		var k record.KadKey
		new(big.Int).Sub(new(big.Int).Add(base, d), big.NewInt(1)).FillBytes(k[:])
		resume := store.Position{Key: k}
		probe := &scanWalk{s: w.s, ctx: w.ctx, opts: w.opts, now: w.now, budget: 1}
		probe.opts.Limit = 1
		switch perr := probe.walk(&resume); {
		case perr == nil:
			return true, nil
		case pebble.IsCorruptionError(perr):
			return false, nil
		default:
			return false, perr
		}
	}
	lo, hi := big.NewInt(0), (*big.Int)(nil)
	for shift := uint(256 - 24); shift < 256; shift++ {
		d := new(big.Int).Lsh(big.NewInt(1), shift)
		if new(big.Int).Add(base, d).Cmp(limit) >= 0 {
			break
		}
		ok, perr := readsAt(d)
		if perr != nil {
			return perr
		}
		if ok {
			hi = d
			break
		}
		lo = d
	}
	if hi == nil {
		// Damaged to the end of the scan's range: the page is the last.
		w.more = false
		return nil
	}
	// Narrow the skipped range, so that few readable records go with it.
	for range 16 {
		mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
		if mid.Cmp(lo) == 0 {
			break
		}
		ok, perr := readsAt(mid)
		if perr != nil {
			return perr
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	var k record.KadKey
	new(big.Int).Sub(new(big.Int).Add(base, hi), big.NewInt(1)).FillBytes(k[:])
	w.last, w.more = store.Position{Key: k}, true
	return nil
}

// scanWalk is the state of one Scan page.
type scanWalk struct {
	s        *Store
	ctx      context.Context
	opts     store.ScanOptions
	now      time.Time
	budget   int
	examined int
	filtered int // other providers' records stepped over
	page     store.Page
	last     store.Position // the last entry examined
	more     bool           // an entry in range remains after last
	scratch  []byte
}

// full reports whether the page is complete, before examining another entry.
func (w *scanWalk) full() bool {
	return w.page.Len() == w.opts.Limit || w.examined == w.budget || w.filtered == filterBudget
}

// records walks the p| or v| range of the region, from after.
func (w *scanWalk) records(after *store.Position) error {
	tag := byte(tagProv)
	if w.opts.Kind == store.Values {
		tag = tagValue
	}
	start := w.opts.Region.Start()
	lower := append([]byte{tag}, start[:]...)
	upper := tagEnd(tag)
	if end, ok := w.opts.Region.End(); ok {
		upper = append([]byte{tag}, end[:]...)
	}
	if after != nil {
		var c []byte
		if tag == tagProv {
			c = successor(provKey(nil, &after.Key, after.Provider))
		} else {
			c = successor(valueKey(nil, &after.Key))
		}
		if bytes.Compare(c, lower) > 0 {
			lower = c
		}
		if bytes.Compare(lower, upper) >= 0 {
			return nil
		}
	}
	it, err := w.s.db.NewIterWithContext(w.ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	// The last provider record examined, kept as its key: building its
	// Position for every record stepped over would allocate.
	var lastKey []byte
	defer func() {
		if k, p, ok := parseProvKey(lastKey); ok {
			w.last = store.Position{Key: k, Provider: peer.ID(p)}
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		if w.full() {
			w.more = true
			break
		}
		key := it.Key()
		if tag == tagProv {
			_, p, ok := parseProvKey(key)
			if !ok {
				continue
			}
			lastKey = append(lastKey[:0], key...)
			if w.opts.Peer != "" && string(p) != string(w.opts.Peer) {
				// Another provider's record, told apart by its key alone;
				// a page steps over many of them (filterBudget).
				if w.filtered++; w.filtered%ctxCheckEvery == 0 {
					if err := w.ctx.Err(); err != nil {
						return err
					}
				}
				continue
			}
			if err := w.tick(); err != nil {
				return err
			}
			v, err := it.ValueAndErr()
			if err != nil {
				return fmt.Errorf("pebblestore: %w", err)
			}
			w.addProvider(key, p, v)
		} else {
			if err := w.tick(); err != nil {
				return err
			}
			v, err := it.ValueAndErr()
			if err != nil {
				return fmt.Errorf("pebblestore: %w", err)
			}
			var k record.KadKey
			if len(key) != 1+kk {
				continue
			}
			copy(k[:], key[1:])
			w.last = store.Position{Key: k}
			w.addValue(key, v)
		}
	}
	return it.Error()
}

// peerProviders walks the peer index range of opts.Peer in the region, from
// after, reading each record from p|.
func (w *scanWalk) peerProviders(after *store.Position) error {
	p := w.opts.Peer
	prefix := peerPrefix(nil, p)
	start := w.opts.Region.Start()
	lower := append(bytes.Clone(prefix), start[:]...)
	upper := prefixEnd(prefix)
	if end, ok := w.opts.Region.End(); ok {
		upper = append(bytes.Clone(prefix), end[:]...)
	}
	if after != nil {
		// Records of after.Key come after the cursor only if their provider
		// does; the peer's is fixed.
		c := append(bytes.Clone(prefix), after.Key[:]...)
		if p <= after.Provider {
			c = successor(c)
		}
		if bytes.Compare(c, lower) > 0 {
			lower = c
		}
		if bytes.Compare(lower, upper) >= 0 {
			return nil
		}
	}
	idx, err := w.s.db.NewIterWithContext(w.ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	defer idx.Close()
	recs, err := w.s.db.NewIterWithContext(w.ctx, &pebble.IterOptions{
		LowerBound: []byte{tagProv}, UpperBound: tagEnd(tagProv),
	})
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	defer recs.Close()
	var pk []byte
	for valid := idx.First(); valid; valid = idx.Next() {
		if w.full() {
			w.more = true
			break
		}
		if err := w.tick(); err != nil {
			return err
		}
		_, k, ok := parsePeerKey(idx.Key())
		if !ok {
			continue
		}
		w.last = store.Position{Key: k, Provider: p}
		pk = provKey(pk[:0], &k, p)
		if !recs.SeekGE(pk) || !bytes.Equal(recs.Key(), pk) {
			if err := recs.Error(); err != nil {
				return fmt.Errorf("pebblestore: %w", err)
			}
			w.s.log.Error("pebblestore: peer index entry without its record", "kadkey", k.String(), "provider", p)
			continue
		}
		v, err := recs.ValueAndErr()
		if err != nil {
			return fmt.Errorf("pebblestore: %w", err)
		}
		w.addProvider(pk, []byte(p), v)
	}
	return idx.Error()
}

// tick counts an examined entry and checks the context now and then.
func (w *scanWalk) tick() error {
	w.examined++
	if w.examined%ctxCheckEvery == 0 {
		return w.ctx.Err()
	}
	return nil
}

func (w *scanWalk) addProvider(key, p, v []byte) {
	r, err := decodeProviderFast(w.s.addrs, p, v)
	switch {
	case err != nil:
		w.s.corrupt(store.Providers, key, err)
		w.page.Skipped++
	case w.s.limits.Live(r.Expires, w.now):
		w.page.Providers = append(w.page.Providers, r)
	}
}

func (w *scanWalk) addValue(key, v []byte) {
	var r store.ValueRecord
	var err error
	r, w.scratch, err = decodeValue(w.scratch, v)
	switch {
	case err != nil:
		w.s.corrupt(store.Values, key, err)
		w.page.Skipped++
	case w.opts.Peer != "" && r.Publisher != w.opts.Peer:
	case w.s.limits.Live(r.Expires, w.now):
		w.page.Values = append(w.page.Values, r)
	}
}
