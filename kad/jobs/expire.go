package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/kadstore/kadstore/store"
)

// ExpirerOptions configure an Expirer. Zero fields take their defaults.
type ExpirerOptions struct {
	// Interval between runs. Default 10 minutes.
	Interval time.Duration
	// Batch is the most records one Store.Expire call removes. Default 10 000.
	Batch int
	// Pause between batches, so that lookups are not starved while a large
	// backlog is removed. Default 5 ms.
	Pause time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnExpired, if set, is called with the count of each batch (metrics).
	OnExpired func(n int)
	Logger    *slog.Logger
}

func (o *ExpirerOptions) ensureDefaults() {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Minute
	}
	if o.Batch <= 0 {
		o.Batch = 10_000
	}
	if o.Pause == 0 {
		o.Pause = 5 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Expirer removes expired records from a store in bounded batches.
type Expirer struct {
	s    store.Store
	opts ExpirerOptions
	t    tracker
}

// NewExpirer returns an Expirer for s.
func NewExpirer(s store.Store, opts ExpirerOptions) *Expirer {
	opts.ensureDefaults()
	e := &Expirer{s: s, opts: opts}
	e.t.p.Job = "expire"
	return e
}

// Progress returns the job's state.
func (e *Expirer) Progress() Progress { return e.t.get() }

// RunOnce removes every record expired at the time of the call, one batch at
// a time, and returns how many it removed.
func (e *Expirer) RunOnce(ctx context.Context) (int, error) {
	now := e.opts.Now()
	e.t.update(func(p *Progress) { p.Running = true; p.Done = 0 })
	defer e.t.update(func(p *Progress) { p.Running = false })
	total := 0
	for {
		n, err := e.s.Expire(ctx, now, e.opts.Batch)
		total += n
		e.t.update(func(p *Progress) { p.Done += int64(n); p.Total += int64(n) })
		if n > 0 && e.opts.OnExpired != nil {
			e.opts.OnExpired(n)
		}
		if err != nil {
			e.t.fail(err)
			return total, err
		}
		if n < e.opts.Batch {
			break
		}
		if !sleep(ctx, e.opts.Pause) {
			return total, ctx.Err()
		}
	}
	e.t.update(func(p *Progress) { p.Cycles++; p.LastRun = e.opts.Now() })
	if total > 0 {
		e.opts.Logger.Info("expired records", "removed", total)
	}
	return total, nil
}

// Run calls RunOnce every Interval until ctx ends.
func (e *Expirer) Run(ctx context.Context) {
	for {
		if _, err := e.RunOnce(ctx); err != nil && ctx.Err() == nil {
			e.opts.Logger.Warn("expiry failed", "err", err)
		}
		if !sleep(ctx, e.opts.Interval) {
			return
		}
	}
}
