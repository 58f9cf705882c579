package bench_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kadstore/kadstore/internal/bench"
)

func TestHistogramQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var a, b bench.Histogram
	var all []time.Duration
	for i := range 100_000 {
		// Log-uniform from 1 ns to ~10 s, so every bucket scale is exercised.
		d := time.Duration(math.Exp(r.Float64() * 23))
		all = append(all, d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	slices.Sort(all)
	if a.Count() != uint64(len(all)) {
		t.Fatalf("Count = %d, want %d", a.Count(), len(all))
	}
	if a.Max() != all[len(all)-1] {
		t.Errorf("Max = %v, want %v", a.Max(), all[len(all)-1])
	}
	for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := max(1, int(math.Ceil(q*float64(len(all)))))
		want := all[rank-1]
		got := a.Quantile(q)
		if diff := math.Abs(float64(got - want)); diff > float64(want)/100+1 {
			t.Errorf("Quantile(%v) = %v, want %v within 1%%", q, got, want)
		}
	}
}

func TestHistogramSmallValuesExact(t *testing.T) {
	var h bench.Histogram
	for d := time.Duration(1); d <= 200; d++ {
		h.Record(d)
	}
	if got := h.Quantile(0.5); got != 100 {
		t.Errorf("median of 1..200 ns = %v, want 100ns", got)
	}
	if got := h.Quantile(1); got != 200 {
		t.Errorf("max quantile = %v, want 200ns", got)
	}
	var empty bench.Histogram
	if got := empty.Quantile(0.99); got != 0 {
		t.Errorf("empty histogram p99 = %v, want 0", got)
	}
}
