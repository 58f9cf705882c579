package kad

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// writeAdmission decides whether a record sent by a peer (ADD_PROVIDER,
// PUT_VALUE) may reach the store: each remote peer has a token bucket of
// burst tokens refilled at limit a second, one token a record. The burst is
// spent at no more than peakFactor × limit a second (a second bucket, of
// peakBurst tokens): a burst stored all at once is a latency spike for every
// other peer, as long as it lasts.
//
// A request that finds the bucket empty waits for its token when the token is
// due within maxWait: the stream is not read meanwhile, so a fast sender is
// slowed by flow control rather than refused, and a sweeping reprovider's
// batch past the burst is stored late but whole. A request whose token is due
// later (many streams of one peer queue on one bucket) is refused.
//
// Peer state is bounded: at most maxPeers buckets are kept. When the table is
// full, buckets that have refilled completely (idle peers: a fresh bucket would
// be the same) are dropped; if none has, an arbitrary bucket is dropped, which
// gives its peer a full burst again but keeps memory bounded.
type writeAdmission struct {
	limit    rate.Limit
	burst    int
	maxWait  time.Duration
	maxPeers int
	now      func() time.Time

	mu    sync.Mutex
	peers map[peer.ID]*peerBuckets
}

// peerBuckets are the sustained and the peak bucket of one peer.
type peerBuckets struct{ sustained, peak *rate.Limiter }

// peakFactor is how much faster than the sustained rate a burst is spent.
const peakFactor = 2

// peakBurst is the peak bucket's size: a tenth of a second at the peak rate,
// at least 100, at most the burst.
func peakBurst(limit float64, burst int) int {
	return min(burst, max(100, int(peakFactor*limit/10)))
}

// admitted outcomes
const (
	admitOK = iota
	admitRefused
	admitCancelled
)

func newWriteAdmission(limit float64, burst int, maxWait time.Duration, maxPeers int) *writeAdmission {
	return &writeAdmission{
		limit:    rate.Limit(limit),
		burst:    burst,
		maxWait:  maxWait,
		maxPeers: maxPeers,
		now:      time.Now,
		peers:    make(map[peer.ID]*peerBuckets),
	}
}

// admit takes one token of p's bucket, waiting for it up to maxWait or ctx's
// end. A nil admission admits everything.
func (a *writeAdmission) admit(ctx context.Context, p peer.ID) int {
	if a == nil {
		return admitOK
	}
	now := a.now()
	b := a.bucket(p, now)
	rs, rp := b.sustained.ReserveN(now, 1), b.peak.ReserveN(now, 1)
	cancel := func() { rs.CancelAt(now); rp.CancelAt(now) }
	if !rs.OK() || !rp.OK() {
		cancel()
		return admitRefused
	}
	d := max(rs.DelayFrom(now), rp.DelayFrom(now))
	if d == 0 {
		return admitOK
	}
	if d > a.maxWait {
		cancel()
		return admitRefused
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return admitOK
	case <-ctx.Done():
		cancel()
		return admitCancelled
	}
}

func (a *writeAdmission) bucket(p peer.ID, now time.Time) *peerBuckets {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b, ok := a.peers[p]; ok {
		return b
	}
	if len(a.peers) >= a.maxPeers {
		a.evict(now)
	}
	b := &peerBuckets{
		sustained: rate.NewLimiter(a.limit, a.burst),
		peak:      rate.NewLimiter(peakFactor*a.limit, peakBurst(float64(a.limit), a.burst)),
	}
	a.peers[p] = b
	return b
}

// evict drops idle buckets, or one arbitrary bucket if none is idle. a.mu is
// held.
func (a *writeAdmission) evict(now time.Time) {
	for p, b := range a.peers {
		if b.sustained.TokensAt(now) >= float64(a.burst) {
			delete(a.peers, p)
		}
	}
	if len(a.peers) < a.maxPeers {
		return
	}
	for p := range a.peers {
		delete(a.peers, p)
		return
	}
}

// size is the number of peers with state.
func (a *writeAdmission) size() int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.peers)
}
