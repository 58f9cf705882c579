package jobs

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// Reprovider re-announces the node's own provider records, region by region,
// and refreshes their expiry in the store.
type Reprovider struct{ w walker }

// NewReprovider returns a Reprovider of the records in s whose provider is
// net.Self(). Default interval 22 h.
func NewReprovider(s store.Store, net Network, opts WalkOptions) *Reprovider {
	opts.ensureDefaults(22 * time.Hour)
	r := &Reprovider{w: walker{name: "reprovide", kind: store.Providers, own: true, s: s, net: net, opts: opts}}
	r.w.t.p.Job = "reprovide"
	r.w.handle = r.handle
	return r
}

// Progress returns the job's state.
func (r *Reprovider) Progress() Progress { return r.w.progress() }

// RunCycle runs one whole cycle now (resuming a cycle a restart interrupted),
// without spreading it over the interval.
func (r *Reprovider) RunCycle(ctx context.Context) error { return r.w.cycle(ctx, false) }

// Run repeats cycles, each spread over the interval, until ctx ends.
func (r *Reprovider) Run(ctx context.Context) { r.w.run(ctx) }

func (r *Reprovider) handle(ctx context.Context, page store.Page, cands *candidates) error {
	batches := make(map[peer.ID][]store.ProviderRecord)
	for _, rec := range page.Providers {
		for _, p := range cands.closest(rec.KadKey(), r.w.opts.K) {
			batches[p] = append(batches[p], rec)
		}
	}
	sent, errs := sendAll(ctx, r.w.opts.Concurrency, batches, r.w.net.SendProviders)
	r.w.record(sent, errs)
	if err := ctx.Err(); err != nil {
		return err
	}
	// Refresh the records' own expiry: the node still provides them.
	expires := r.w.opts.Now().Add(r.w.opts.TTL)
	fresh := make([]store.ProviderRecord, len(page.Providers))
	for i, rec := range page.Providers {
		rec.Expires = expires
		fresh[i] = rec
	}
	if err := r.w.s.AddProviders(ctx, fresh...); err != nil {
		r.w.t.fail(err)
		return err
	}
	return nil
}
