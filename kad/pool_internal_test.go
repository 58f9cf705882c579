package kad

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/kadstore/kadstore/store"
)

// TestStoreCallRecovers: a panicking call returns an error matching
// ErrStorePanic and, when the panic value is an error, that error too; the
// slot is freed, so the next call of a one-slot pool runs.
func TestStoreCallRecovers(t *testing.T) {
	m, err := newMetrics(nil, func() float64 { return 0 }, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	p := newStorePool(1, m, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	_, err = storeCall(ctx, p, "GetValue", func(context.Context) (int, error) {
		panic(fmt.Errorf("sstable: %w", store.ErrCorrupt))
	})
	if !errors.Is(err, ErrStorePanic) || !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("error %v, want ErrStorePanic and store.ErrCorrupt", err)
	}
	_, err = storeCall(ctx, p, "Providers", func(context.Context) (int, error) { panic("boom") })
	if !errors.Is(err, ErrStorePanic) {
		t.Fatalf("error %v, want ErrStorePanic", err)
	}
	if v, err := storeCall(ctx, p, "Stats", func(context.Context) (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("call after the panics: %v, %v", v, err)
	}
	p.wait()
	// A panic is a store error whatever its value wraps: never a rejected
	// record, never a timeout.
	for _, v := range []error{errors.New("boom"), store.ErrStoreFull, context.DeadlineExceeded} {
		_, err := storeCall(ctx, p, "AddProviders", func(context.Context) (int, error) { panic(fmt.Errorf("x: %w", v)) })
		if got := storeOutcome(err); got != outcomeStoreError || isRejection(err) {
			t.Errorf("panic with %v: outcome %s, rejection %v; want %s, false", v, got, isRejection(err), outcomeStoreError)
		}
	}
}
