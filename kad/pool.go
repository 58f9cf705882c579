package kad

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
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
//
// A store call that panics does not take the process down: the panic is
// recovered, logged, counted (kadstore_kad_store_panics_total) and returned
// to the caller as an error matching ErrStorePanic, and the slot is freed.
type storePool struct {
	slots   chan struct{}
	wg      sync.WaitGroup
	latency *prometheus.HistogramVec
	panics  *prometheus.CounterVec
	log     *slog.Logger
}

func newStorePool(n int, m *metrics, log *slog.Logger) *storePool {
	return &storePool{slots: make(chan struct{}, n), latency: m.storeLatency, panics: m.storePanics, log: log}
}

// storeCall runs f through p with ctx, returning f's result, or an error
// matching ctx.Err() (and ErrStoreBusy if no slot was free in time), or one
// matching ErrStorePanic if f panicked.
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
		v, err := recoverCall(ctx, p, method, f)
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

// recoverCall runs f, turning a panic into an error matching ErrStorePanic
// (and the panic value, if it is an error).
func recoverCall[T any](ctx context.Context, p *storePool, method string, f func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		p.panics.WithLabelValues(method).Inc()
		p.log.Error("store call panicked; the node goes on serving", "method", method, "panic", r)
		p.log.Debug("store call panic stack", "method", method, "stack", string(debug.Stack()))
		var zero T
		v = zero
		if e, ok := r.(error); ok {
			err = fmt.Errorf("%w: %s: %w", ErrStorePanic, method, e)
		} else {
			err = fmt.Errorf("%w: %s: %v", ErrStorePanic, method, r)
		}
	}()
	return f(ctx)
}

// wait blocks until every call started through p has returned.
func (p *storePool) wait() { p.wg.Wait() }
