package workers_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/kadstore/kadstore/internal/workers"
)

func TestRun(t *testing.T) {
	var running, peak, calls atomic.Int64
	err := workers.Run(context.Background(), 100, 3, func(_ context.Context, i int) error {
		calls.Add(1)
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		running.Add(-1)
		return nil
	})
	if err != nil || calls.Load() != 100 || peak.Load() > 3 {
		t.Fatalf("err %v, %d calls, %d at once (limit 3)", err, calls.Load(), peak.Load())
	}

	boom := errors.New("boom")
	if err := workers.Run(context.Background(), 10, 2, func(_ context.Context, i int) error {
		if i == 4 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Fatalf("error %v, want the call's", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls.Store(0)
	if err := workers.Run(ctx, 10, 2, func(context.Context, int) error { calls.Add(1); return nil }); !errors.Is(err, context.Canceled) || calls.Load() != 0 {
		t.Fatalf("cancelled: %v, %d calls", err, calls.Load())
	}
}
