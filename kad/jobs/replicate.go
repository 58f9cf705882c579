package jobs

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// Replicator re-sends stored value records to the peers now closest to them,
// region by region. With Own set it walks only the node's own records (those
// it published) and refreshes their expiry: that is republishing.
type Replicator struct {
	w       walker
	handOff bool
}

// ReplicatorOptions add to WalkOptions.
type ReplicatorOptions struct {
	WalkOptions
	// Own restricts the walk to records published by this node and refreshes
	// their expiry (republishing). Default interval 22 h; otherwise 1 h.
	Own bool
	// HandOff deletes a record from this node's store once it was sent to its
	// closest peers and this node is no longer among them. Off by default: a
	// node's view of the closest peers comes from a few lookups and may be
	// incomplete, and a network that churns would otherwise shed replicas it
	// will need again; keeping a record costs disk only until it expires.
	HandOff bool
}

// NewReplicator returns a Replicator of the value records in s.
func NewReplicator(s store.Store, net Network, opts ReplicatorOptions) *Replicator {
	name, interval := "replicate", time.Hour
	if opts.Own {
		name, interval = "republish", 22*time.Hour
	}
	opts.ensureDefaults(interval)
	r := &Replicator{
		w:       walker{name: name, kind: store.Values, own: opts.Own, s: s, net: net, opts: opts.WalkOptions},
		handOff: opts.HandOff && !opts.Own,
	}
	r.w.t.p.Job = name
	r.w.handle = r.handle
	return r
}

// Progress returns the job's state.
func (r *Replicator) Progress() Progress { return r.w.progress() }

// RunCycle runs one whole cycle now, without spreading it over the interval.
func (r *Replicator) RunCycle(ctx context.Context) error { return r.w.cycle(ctx, false) }

// Run repeats cycles until ctx ends.
func (r *Replicator) Run(ctx context.Context) { r.w.run(ctx) }

func (r *Replicator) handle(ctx context.Context, page store.Page, cands *candidates) error {
	self := r.w.net.Self()
	recs := page.Values
	if r.w.own {
		expires := r.w.opts.Now().Add(r.w.opts.TTL)
		recs = make([]store.ValueRecord, len(page.Values))
		for i, rec := range page.Values {
			rec.Expires = expires
			recs[i] = rec
			if err := r.w.s.PutValue(ctx, rec); err != nil {
				r.w.t.fail(err)
				return err
			}
		}
	}
	batches := make(map[peer.ID][]store.ValueRecord)
	var handOff []store.ValueRecord
	withSelf := &candidates{ids: append(slices.Clone(cands.ids), self), keys: append(slices.Clone(cands.keys), PeerKey(self))}
	for _, rec := range recs {
		closest := withSelf.closest(rec.KadKey(), r.w.opts.K+1)
		selfAmong := false
		n := 0
		for _, p := range closest {
			if p == self {
				selfAmong = true
				continue
			}
			if n < r.w.opts.K {
				batches[p] = append(batches[p], rec)
				n++
			}
		}
		if r.handOff && !selfAmong && n > 0 {
			handOff = append(handOff, rec)
		}
	}
	sent, errs := sendAll(ctx, r.w.opts.Concurrency, batches, r.w.net.SendValues)
	r.w.record(sent, errs)
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(errs) == 0 {
		for _, rec := range handOff {
			if err := r.w.s.DeleteValue(ctx, rec.Key); err != nil {
				r.w.t.fail(err)
			}
		}
	}
	return nil
}
