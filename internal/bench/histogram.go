package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's resolution: each power of two is split into
// 2^subBits buckets, so a recorded value is off by less than 1/2^subBits
// (0.8 %) of itself, and values below 2^(subBits+1) ns are exact.
const subBits = 7

// buckets covers every int64 nanosecond value.
const buckets = (64 - subBits) << subBits

// Histogram counts durations in log-linear buckets, like HdrHistogram: a fixed
// 57 KiB whatever the number of samples, so a million lookups cost the
// benchmark no memory that would show in its RSS. It is not safe for
// concurrent use; give each goroutine its own and Merge them.
type Histogram struct {
	counts [buckets]uint64
	total  uint64
	max    int64
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	l := bits.Len64(u)
	if l <= subBits+1 {
		return int(u)
	}
	shift := l - subBits - 1
	return shift<<subBits + int(u>>shift)
}

// bucketMid returns the middle of bucket i's value range.
func bucketMid(i int) int64 {
	if i < 2<<subBits {
		return int64(i)
	}
	shift := i>>subBits - 1
	m := int64(i - shift<<subBits)
	return m<<shift + (int64(1)<<shift)/2
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.total++
	h.max = max(h.max, int64(d))
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest duration recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Quantile returns the duration below which a fraction q of the recorded
// durations lie (q = 0.99 for p99), or 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(1, min(rank, h.total))
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return time.Duration(min(bucketMid(i), h.max))
		}
	}
	return time.Duration(h.max)
}
