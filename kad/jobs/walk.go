package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// WalkOptions configure a region walk (Reprovider, Replicator). Zero fields
// take their defaults.
type WalkOptions struct {
	// Interval is the length of a cycle; the regions of a cycle are spread
	// over it rather than sent in one burst. Defaults: 22 h for reproviding
	// and republishing, 1 h for replication.
	Interval time.Duration
	// TTL is the expiry given to refreshed own records. Default 48 h.
	TTL time.Duration
	// PageSize is the most records held at once. Default 1000.
	PageSize int
	// Concurrency is how many peers are sent to at once. Default 16.
	Concurrency int
	// K is the number of closest peers each record goes to. Default 20.
	K int
	// RegionBits, if positive, fixes the region prefix length instead of
	// deriving it from the network size estimate.
	RegionBits int
	// State keeps the cursor across restarts; default in memory only.
	State StateStore
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (o *WalkOptions) ensureDefaults(interval time.Duration) {
	if o.Interval <= 0 {
		o.Interval = interval
	}
	if o.TTL <= 0 {
		o.TTL = 48 * time.Hour
	}
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.K <= 0 {
		o.K = 20
	}
	if o.State == nil {
		o.State = &MemState{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// walker is the region-by-region loop shared by the jobs that send records
// to their closest peers.
type walker struct {
	name string
	kind store.Kind
	own  bool // only the node's own records
	s    store.Store
	net  Network
	opts WalkOptions
	t    tracker
	// handle sends one page's records to their closest peers among
	// candidates.
	handle func(ctx context.Context, page store.Page, cands *candidates) error
	// running serialises cycles.
	running sync.Mutex
}

func (w *walker) progress() Progress { return w.t.get() }

// regionBits picks the region length for this cycle, looking up toward the
// node's own key to estimate the network size.
func (w *walker) regionBits(ctx context.Context) int {
	if w.opts.RegionBits > 0 {
		return w.opts.RegionBits
	}
	self := PeerKey(w.net.Self())
	seen, err := w.net.Lookup(ctx, self)
	w.t.update(func(p *Progress) { p.Lookups++ })
	if err != nil {
		w.t.fail(fmt.Errorf("network size lookup: %w", err))
	}
	n := EstimateNetworkSize(self, union(seen, w.net.RoutingPeers(), w.net.Self()))
	return RegionBits(n, w.opts.K)
}

func union(a, b []peer.ID, exclude peer.ID) []peer.ID {
	seen := make(map[peer.ID]bool, len(a)+len(b))
	out := make([]peer.ID, 0, len(a)+len(b))
	for _, l := range [][]peer.ID{a, b} {
		for _, p := range l {
			if p != exclude && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// cycle walks every region once, resuming from the saved cursor. With spread,
// it waits between regions so the cycle lasts about Interval.
func (w *walker) cycle(ctx context.Context, spread bool) error {
	w.running.Lock()
	defer w.running.Unlock()
	after, err := w.opts.State.Load(w.name)
	if err != nil {
		w.t.fail(err)
		after = nil
	}
	var pos record.KadKey
	if after != nil {
		p, err := after.Decode(w.kind)
		if err != nil {
			w.t.fail(fmt.Errorf("saved cursor: %w", err))
			after = nil
		} else {
			pos = p.Key
		}
	}
	w.t.update(func(p *Progress) {
		p.Running, p.Cursor = true, after
		if after == nil {
			p.Done, p.Lookups, p.Sent = 0, 0, 0
		}
	})
	bits := w.regionBits(ctx)
	w.t.update(func(p *Progress) { p.RegionBits = bits })
	defer w.t.update(func(p *Progress) { p.Running = false })

	regions := 1 << bits
	pause := w.opts.Interval / time.Duration(regions)
	region := record.RegionOf(pos, bits)
	for {
		if err := w.walkRegion(ctx, region, after); err != nil {
			return err
		}
		next, ok := region.Next()
		if !ok {
			break
		}
		region, after = next, nil
		if spread && !sleep(ctx, pause) {
			return ctx.Err()
		}
	}
	if err := w.opts.State.Save(w.name, nil); err != nil {
		w.t.fail(err)
	}
	w.t.update(func(p *Progress) { p.Cycles++; p.LastRun = w.opts.Now(); p.Cursor = nil })
	return nil
}

// walkRegion handles the records of one region after the cursor: the
// region's peers (found only if the region holds any record), then page by
// page.
func (w *walker) walkRegion(ctx context.Context, region record.Region, after store.Cursor) error {
	opts := store.ScanOptions{Kind: w.kind, Region: region, After: after, Limit: w.opts.PageSize}
	if w.own {
		opts.Peer = w.net.Self()
	}
	var cands *candidates
	for {
		page, err := w.s.Scan(ctx, opts)
		if err != nil {
			w.t.fail(err)
			return err
		}
		n := page.Len()
		w.t.hold(n)
		if n > 0 && cands == nil {
			cands = newCandidates(w.regionPeers(ctx, region))
		}
		if n > 0 {
			if err := w.handle(ctx, page, cands); err != nil {
				w.t.hold(-n)
				return err
			}
		}
		w.t.hold(-n)
		cursor := page.Next
		if cursor == nil && n > 0 {
			cursor = lastCursor(w.kind, page)
		}
		if cursor != nil {
			if err := w.opts.State.Save(w.name, cursor); err != nil {
				w.t.fail(err)
			}
		}
		w.t.update(func(p *Progress) { p.Done += int64(n); p.Total += int64(n); p.Cursor = cursor })
		if page.Next == nil {
			return nil
		}
		opts.After = page.Next
	}
}

// maxRegionLookups bounds the lookups regionPeers spends on one region.
const maxRegionLookups = 64

// regionPeers returns every peer of region that lookups find, or of the
// smallest region around it that holds at least k peers, with the peers the
// lookups and the routing table met on the way. The k closest peers of any
// key of the region are then among them: in the XOR metric a peer that shares
// a longer prefix with a key is closer to it than every peer that shares a
// shorter one, so a region holding k peers or more holds the k closest peers
// of each of its keys.
//
// One lookup toward a region learns at least the k peers closest to its
// midpoint. If fewer than k of the peers it learned lie in the region, the
// region holds fewer than k peers and the lookup found them all; otherwise
// there may be more, and each half of the region is explored the same way.
// A part that an earlier lookup of the region already settled (see settled
// below) is not looked up again. A region sized by RegionBits holds about 2k
// to 4k peers, so this costs a handful of lookups (about 4.5 a region at 4k,
// against 8 when every half and quarter was looked up in turn); when the
// estimate was too high and the region holds fewer than k peers, its sibling
// is explored too, and so on up, until the enclosing region holds k.
func (w *walker) regionPeers(ctx context.Context, region record.Region) []peer.ID {
	self := w.net.Self()
	found := make(map[peer.ID]record.KadKey)
	add := func(ps []peer.ID) {
		for _, p := range ps {
			if _, ok := found[p]; !ok && p != self {
				found[p] = PeerKey(p)
			}
		}
	}
	// inside counts the peers of ps (all added to found) that lie in r.
	inside := func(ps []peer.ID, r record.Region) int {
		n := 0
		for _, p := range ps {
			if p != self && r.Contains(found[p]) {
				n++
			}
		}
		return n
	}
	// known counts the peers found so far that lie in r.
	known := func(r record.Region) int {
		n := 0
		for _, k := range found {
			if r.Contains(k) {
				n++
			}
		}
		return n
	}
	// settled holds the parts whose every peer is known. A lookup toward t
	// learns at least the k peers closest to t, so a part around t in which
	// it learned fewer than k peers holds no others: a peer of the part it
	// missed would be closer to t than the learned peers outside the part.
	// Each lookup settles the largest such part, which is often a part the
	// walk would look up next (the lookup toward a region's midpoint settles
	// the lowest quarter of its upper half, say), and a settled part is not
	// looked up again.
	var settled []record.Region
	isSettled := func(r record.Region) bool {
		for _, s := range settled {
			if s.Bits <= r.Bits && s.Contains(r.Start()) {
				return true
			}
		}
		return false
	}
	settle := func(seen []peer.ID, t record.KadKey, from int) {
		cpls := make([]int, 0, len(seen))
		for _, p := range seen {
			if p != self {
				cpls = append(cpls, record.CommonPrefixLen(found[p], t))
			}
		}
		slices.Sort(cpls)
		// The part of b bits around t holds the peers with cpl >= b; find
		// the shortest b from which fewer than k of them were learned.
		for b := from; b <= record.KadKeySize*8; b++ {
			i, _ := slices.BinarySearch(cpls, b)
			if len(cpls)-i < w.opts.K {
				settled = append(settled, record.RegionOf(t, b))
				return
			}
		}
	}
	add(w.net.RoutingPeers())
	lookups := 0
	explore := func(r record.Region) {
		stack := []record.Region{r}
		for len(stack) > 0 && lookups < maxRegionLookups && ctx.Err() == nil {
			r := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if isSettled(r) {
				continue
			}
			target := regionTarget(r)
			seen, err := w.net.Lookup(ctx, target)
			lookups++
			w.t.update(func(p *Progress) { p.Lookups++ })
			if err != nil {
				w.t.fail(fmt.Errorf("lookup for region %v: %w", r, err))
			}
			add(seen)
			if err == nil {
				settle(seen, target, r.Bits)
			}
			if inside(seen, r) >= w.opts.K && r.Bits < record.KadKeySize*8 {
				lo, hi := halves(r)
				stack = append(stack, hi, lo)
			}
		}
	}
	explore(region)
	for cur := region; cur.Bits > 0 && known(cur) < w.opts.K && lookups < maxRegionLookups; cur = record.RegionOf(cur.Prefix, cur.Bits-1) {
		explore(sibling(cur))
	}
	out := make([]peer.ID, 0, len(found))
	for p := range found {
		out = append(out, p)
	}
	return out
}

// halves splits r into the regions one bit longer; the upper half starts at
// r's midpoint.
func halves(r record.Region) (lo, hi record.Region) {
	return record.RegionOf(r.Start(), r.Bits+1), record.RegionOf(regionTarget(r), r.Bits+1)
}

// sibling is the region r forms its parent with. r.Bits must be > 0.
func sibling(r record.Region) record.Region {
	k := r.Start()
	b := r.Bits - 1
	k[b/8] ^= 0x80 >> uint(b%8)
	return record.RegionOf(k, r.Bits)
}

func lastCursor(kind store.Kind, page store.Page) store.Cursor {
	if kind == store.Providers {
		r := page.Providers[len(page.Providers)-1]
		return store.NewCursor(kind, store.Position{Key: r.KadKey(), Provider: r.Provider})
	}
	r := page.Values[len(page.Values)-1]
	return store.NewCursor(kind, store.Position{Key: r.KadKey()})
}

// sendAll runs send for every peer of batches, Concurrency at a time, and
// returns how many records went out and the errors.
func sendAll[T any](ctx context.Context, concurrency int, batches map[peer.ID][]T,
	send func(context.Context, peer.ID, []T) error) (sent int64, errs []error) {
	peers := make([]peer.ID, 0, len(batches))
	for p := range batches {
		peers = append(peers, p)
	}
	slices.Sort(peers)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for _, p := range peers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return sent, append(errs, ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := send(ctx, p, batches[p])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("peer %s: %w", p, err))
				return
			}
			sent += int64(len(batches[p]))
		}()
	}
	wg.Wait()
	return sent, errs
}

func (w *walker) record(sent int64, errs []error) {
	w.t.update(func(p *Progress) { p.Sent += sent })
	for _, err := range errs {
		w.t.fail(err)
	}
	if len(errs) > 0 {
		w.opts.Logger.Debug("some peers could not be reached", "job", w.name, "failures", len(errs), "first", errs[0])
	}
}

// run repeats cycles until ctx ends.
func (w *walker) run(ctx context.Context) {
	for ctx.Err() == nil {
		start := w.opts.Now()
		if err := w.cycle(ctx, true); err != nil && ctx.Err() == nil {
			w.opts.Logger.Warn("job cycle failed", "job", w.name, "err", err)
			if !sleep(ctx, time.Minute) {
				return
			}
			continue
		}
		if !sleep(ctx, w.opts.Interval-w.opts.Now().Sub(start)) {
			return
		}
	}
}
