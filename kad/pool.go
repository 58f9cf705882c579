package kad

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storePool runs store calls for the node. At most cap(slots) calls are in
// flight; a caller waits for a slot no longer than its context allows. The
// call runs on its own goroutine, so the caller returns at its deadline even
// if the store does not honour the context; the slot stays taken until the
// call really returns, which is what bounds the work a slow store can pile up.
// No lock is held while a call runs.
type storePool struct {
	slots   chan struct{}
	wg      sync.WaitGroup
	latency *prometheus.HistogramVec
}

func newStorePool(n int, latency *prometheus.HistogramVec) *storePool {
	return &storePool{slots: make(chan struct{}, n), latency: latency}
}

// storeCall runs f through p with ctx, returning f's result, or an error
// matching ctx.Err() (and ErrStoreBusy if no slot was free in time).
func storeCall[T any](ctx context.Context, p *storePool, method string, f func(context.Context) (T, error)) (T, error) {
	var zero T
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return zero, fmt.Errorf("%w: %w", ErrStoreBusy, ctx.Err())
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.slots }()
		start := time.Now()
		v, err := f(ctx)
		p.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// wait blocks until every call started through p has returned.
func (p *storePool) wait() { p.wg.Wait() }
