package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultWriteBehindRecords is WriteBehindOptions.MaxRecords by default.
const DefaultWriteBehindRecords = 1024

// WriteBehindOptions configure a WriteBehind.
type WriteBehindOptions struct {
	// MaxRecords is the most records one commit takes, and the most that
	// wait for the next commit: Add blocks while that many are waiting. At
	// most 2×MaxRecords accepted records are not yet durable at any time
	// (one commit in progress, one waiting), as long as each Add brings at
	// most MaxRecords. Default DefaultWriteBehindRecords.
	MaxRecords int
	// OnFailure, if set, is called, from the committing goroutine, for every
	// accepted record the store did not keep, with the store's error (a
	// rejection such as ErrTooManyProviders, or a failure such as
	// ErrNoSpace). It must not call the WriteBehind.
	OnFailure func(rec ProviderRecord, err error)
	// Logger receives one line per failed commit. Default slog.Default().
	Logger *slog.Logger
}

// WriteBehind accepts provider records and commits them to a Store in the
// background, in batches of up to MaxRecords: the write path of provider
// records received from other peers, which go-libp2p-kad-dht's
// ProviderManager also batches in memory before they reach its datastore.
//
// A commit starts as soon as the previous one ends, with every record
// accepted meanwhile, so batches grow with the load and nothing waits on a
// timer: an idle node commits a record as soon as it arrives, a busy one
// commits hundreds at a time. The price is durability: an accepted record is
// lost if the process dies before its commit ends. At most 2×MaxRecords
// records are in that state at any time (when no Add brings more than
// MaxRecords at once), those of the commit in progress and those waiting
// for the next (TestWriteBehindBoundsWhatIsAtRisk). Callers
// whose writes must survive a crash call the Store directly.
//
// A batch the store refuses whole because one of its records breaks a
// limit is split in halves until the refused records are alone, so one bad
// record costs its neighbours a few retries, not their place; each refused
// or failed record goes to OnFailure.
//
// Records not yet committed are visible through Pending, and Providers
// (the store's answer merged with them), so a reader sees a provider record
// as soon as Add returns.
type WriteBehind struct {
	s         Store
	max       int
	onFailure func(ProviderRecord, error)
	log       *slog.Logger

	mu         sync.Mutex
	pending    []ProviderRecord // accepted, waiting for the next commit
	committing []ProviderRecord // in the commit in progress
	keys       map[string]int   // records of each key in pending and committing
	added      uint64           // records accepted so far
	done       uint64           // records whose commit has ended
	progress   chan struct{}    // closed and replaced when a commit ends
	closed     bool

	wake    chan struct{}
	stopped chan struct{}
}

// NewWriteBehind starts a WriteBehind in front of s. Close stops it; it does
// not close s.
func NewWriteBehind(s Store, o WriteBehindOptions) *WriteBehind {
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultWriteBehindRecords
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	w := &WriteBehind{
		s:         s,
		max:       o.MaxRecords,
		onFailure: o.OnFailure,
		log:       o.Logger,
		keys:      make(map[string]int),
		progress:  make(chan struct{}),
		wake:      make(chan struct{}, 1),
		stopped:   make(chan struct{}),
	}
	go w.run()
	return w
}

// Add accepts recs for a later commit and returns without waiting for it,
// unless MaxRecords records are already waiting: then it waits until the
// commit in progress ends, or ctx is done. It returns ErrClosed after Close.
func (w *WriteBehind) Add(ctx context.Context, recs ...ProviderRecord) error {
	if len(recs) == 0 {
		return nil
	}
	w.mu.Lock()
	err := w.waitWhile(ctx, func() bool {
		return !w.closed && len(w.pending) > 0 && len(w.pending)+len(recs) > w.max
	})
	if err != nil {
		w.mu.Unlock()
		return err
	}
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	for i := range recs {
		w.keys[string(recs[i].Key)]++
	}
	w.pending = append(w.pending, recs...)
	w.added += uint64(len(recs))
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Flush waits until every record accepted before it was called has been
// committed (or reported to OnFailure), or ctx is done.
func (w *WriteBehind) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.added
	return w.waitWhile(ctx, func() bool { return w.done < target })
}

// waitWhile waits, holding w.mu on entry and on return, until cond (called
// under w.mu) is false after a commit ends, or ctx is done.
func (w *WriteBehind) waitWhile(ctx context.Context, cond func() bool) error {
	for cond() {
		ch := w.progress
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			w.mu.Lock()
			return ctx.Err()
		case <-ch:
		}
		w.mu.Lock()
	}
	return nil
}

// Close commits what was accepted, stops the WriteBehind, and returns once
// the last commit has ended. Add returns ErrClosed afterwards. It does not
// close the store. Close is idempotent.
func (w *WriteBehind) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	<-w.stopped
	return nil
}

// Waiting returns how many accepted records are not yet committed.
func (w *WriteBehind) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) + len(w.committing)
}

// Pending returns copies of the accepted records of key that are not yet
// committed, one per provider (the latest accepted), in provider ID order.
func (w *WriteBehind) Pending(key []byte) []ProviderRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.keys[string(key)] == 0 {
		return nil
	}
	var out []ProviderRecord
	for _, list := range [2][]ProviderRecord{w.committing, w.pending} {
		for i := range list {
			if bytes.Equal(list[i].Key, key) {
				out = mergeOne(out, list[i])
			}
		}
	}
	for i := range out {
		out[i].Key = bytes.Clone(out[i].Key)
		out[i].Addrs = slices.Clone(out[i].Addrs)
	}
	return out
}

// Providers is the store's Providers merged with Pending(key): a waiting
// record replaces a stored one of the same provider; records that expired
// by now are left out; at most limit come back (limit <= 0: all), in
// provider ID order.
func (w *WriteBehind) Providers(ctx context.Context, key []byte, limit int, now time.Time) ([]ProviderRecord, error) {
	stored, err := w.s.Providers(ctx, key, limit)
	if err != nil {
		return nil, err
	}
	return MergeProviders(stored, w.Pending(key), limit, now), nil
}

// MergeProviders merges the provider records of one key: a record of extra
// replaces the record of base with the same provider, records expired at now
// are dropped, the result is in provider ID order and holds at most limit
// records (limit <= 0: all). base must be in provider ID order (as
// Store.Providers returns it); the result may share its backing array.
func MergeProviders(base, extra []ProviderRecord, limit int, now time.Time) []ProviderRecord {
	if len(extra) == 0 {
		return base
	}
	out := slices.Clone(base)
	for _, r := range extra {
		out = mergeOne(out, r)
	}
	out = slices.DeleteFunc(out, func(r ProviderRecord) bool { return !r.Expires.After(now) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// mergeOne puts r into list, kept in provider ID order, replacing the record
// of r's provider if there is one.
func mergeOne(list []ProviderRecord, r ProviderRecord) []ProviderRecord {
	i, found := slices.BinarySearchFunc(list, r.Provider, func(e ProviderRecord, p peer.ID) int {
		return bytes.Compare([]byte(e.Provider), []byte(p))
	})
	if found {
		list[i] = r
		return list
	}
	return slices.Insert(list, i, r)
}

func (w *WriteBehind) run() {
	defer close(w.stopped)
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if len(w.pending) == 0 {
			w.mu.Unlock()
			return
		}
		n := min(len(w.pending), w.max)
		batch := w.pending[:n:n]
		w.committing = batch
		w.pending = slices.Clone(w.pending[n:])
		w.mu.Unlock()

		w.commit(batch)

		w.mu.Lock()
		for i := range batch {
			k := string(batch[i].Key)
			if w.keys[k]--; w.keys[k] <= 0 {
				delete(w.keys, k)
			}
		}
		w.committing = nil
		w.done += uint64(n)
		close(w.progress)
		w.progress = make(chan struct{})
		w.mu.Unlock()
	}
}

// commit writes batch to the store. A batch refused for one of its records
// is split until the refused records are alone.
func (w *WriteBehind) commit(batch []ProviderRecord) {
	err := w.add(batch)
	if err == nil {
		return
	}
	if IsRejection(err) && len(batch) > 1 {
		h := len(batch) / 2
		w.commit(batch[:h])
		w.commit(batch[h:])
		return
	}
	if !IsRejection(err) {
		w.log.Error("store: write-behind commit failed; its records are lost", "records", len(batch), "error", err)
	}
	if w.onFailure != nil {
		for _, r := range batch {
			w.onFailure(r, err)
		}
	}
}

// add is one AddProviders call, with a panic in the store turned into its
// error: the committing goroutine must outlive a faulty store.
func (w *WriteBehind) add(batch []ProviderRecord) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("store: panic in AddProviders: %v", v)
		}
	}()
	return w.s.AddProviders(context.Background(), batch...)
}
