package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// Network is what the jobs need from the DHT node.
type Network interface {
	// Self is the node's peer ID.
	Self() peer.ID
	// Lookup runs an iterative closest-peers lookup toward a point of the
	// Kademlia keyspace and returns every peer it learned of (not only the k
	// closest), in any order.
	Lookup(ctx context.Context, target record.KadKey) ([]peer.ID, error)
	// RoutingPeers returns the peers of the routing table.
	RoutingPeers() []peer.ID
	// SendProviders sends one ADD_PROVIDER message per record to p, on one
	// stream. The records are the node's own.
	SendProviders(ctx context.Context, p peer.ID, recs []store.ProviderRecord) error
	// SendValues sends one PUT_VALUE message per record to p, on one stream.
	SendValues(ctx context.Context, p peer.ID, recs []store.ValueRecord) error
}

// StateStore keeps the jobs' cursors across restarts.
type StateStore interface {
	Load(job string) (store.Cursor, error)
	Save(job string, c store.Cursor) error
}

// ErrState is wrapped by errors reading or writing job state.
var ErrState = errors.New("jobs: state")

// FileState is a StateStore in one small JSON file, rewritten atomically.
type FileState struct {
	Path string
	mu   sync.Mutex
}

func (f *FileState) read() (map[string][]byte, error) {
	m := map[string][]byte{}
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrState, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrState, f.Path, err)
	}
	return m, nil
}

// Load returns the saved cursor of job, nil if none.
func (f *FileState) Load(job string) (store.Cursor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.read()
	if err != nil {
		return nil, err
	}
	return m[job], nil
}

// Save records the cursor of job; a nil cursor clears it.
func (f *FileState) Save(job string, c store.Cursor) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.read()
	if err != nil {
		m = map[string][]byte{} // a damaged state file only costs a restart of the cycle
	}
	if c == nil {
		delete(m, job)
	} else {
		m[job] = c
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := f.Path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	if err := os.Rename(tmp, f.Path); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	return nil
}

// MemState is an in-memory StateStore (nothing survives a restart).
type MemState struct {
	mu sync.Mutex
	m  map[string]store.Cursor
}

// Load returns the saved cursor of job.
func (s *MemState) Load(job string) (store.Cursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[job], nil
}

// Save records the cursor of job.
func (s *MemState) Save(job string, c store.Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]store.Cursor{}
	}
	s.m[job] = c
	return nil
}

// Progress is a job's state, readable while it runs.
type Progress struct {
	Job string `json:"job"`
	// Running is true while a cycle is under way.
	Running bool `json:"running"`
	// Cycles counts completed cycles.
	Cycles int64 `json:"cycles"`
	// Done counts records handled in the current cycle (or the last one, when
	// idle); Total counts them over all cycles.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Lookups counts closest-peer lookups in the current (or last) cycle.
	Lookups int64 `json:"lookups"`
	// Sent counts records sent to peers (one per record and peer).
	Sent int64 `json:"sent"`
	// Errors counts failures (lookups, sends, store calls); LastError is the
	// latest.
	Errors    int64  `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	// Cursor is the saved position of the current cycle (base64 in JSON).
	Cursor []byte `json:"cursor,omitempty"`
	// LastRun is when the last cycle finished.
	LastRun time.Time `json:"last_run"`
	// MaxHeld is the most records the job held in memory at once.
	MaxHeld int `json:"max_held"`
	// RegionBits is the prefix length of the regions of the current cycle.
	RegionBits int `json:"region_bits"`
}

// tracker guards a Progress.
type tracker struct {
	mu   sync.Mutex
	p    Progress
	held int
}

func (t *tracker) get() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.p
	p.Cursor = slices.Clone(p.Cursor)
	return p
}

func (t *tracker) update(f func(p *Progress)) {
	t.mu.Lock()
	f(&t.p)
	t.mu.Unlock()
}

func (t *tracker) fail(err error) {
	t.update(func(p *Progress) { p.Errors++; p.LastError = err.Error() })
}

// hold records that n more records are in memory (negative: released).
func (t *tracker) hold(n int) {
	t.mu.Lock()
	t.held += n
	t.p.MaxHeld = max(t.p.MaxHeld, t.held)
	t.mu.Unlock()
}

// PeerKey returns the Kademlia key of a peer.
func PeerKey(p peer.ID) record.KadKey { return sha256.Sum256([]byte(p)) }

// Closest returns the k peers of candidates closest to target by XOR
// distance, closest first. It does not modify candidates.
func Closest(target record.KadKey, candidates []peer.ID, k int) []peer.ID {
	return newCandidates(candidates).closest(target, k)
}

// candidates are peers with their Kademlia keys computed once, so that
// picking the closest peers of every record of a region hashes nothing.
type candidates struct {
	ids  []peer.ID
	keys []record.KadKey
}

func newCandidates(ids []peer.ID) *candidates {
	c := &candidates{ids: ids, keys: make([]record.KadKey, len(ids))}
	for i, id := range ids {
		c.keys[i] = PeerKey(id)
	}
	return c
}

func xor(a, b record.KadKey) (d record.KadKey) {
	for i := range d {
		d[i] = a[i] ^ b[i]
	}
	return d
}

// closest keeps the k best in a small sorted array: O(n·k) worst case but
// O(n) in practice, as most candidates lose to the current k-th at once.
func (c *candidates) closest(target record.KadKey, k int) []peer.ID {
	if k <= 0 {
		return nil
	}
	type entry struct {
		i int
		d record.KadKey
	}
	best := make([]entry, 0, k+1)
	for i, key := range c.keys {
		d := xor(key, target)
		if len(best) == k && slices.Compare(d[:], best[k-1].d[:]) >= 0 {
			continue
		}
		at, _ := slices.BinarySearchFunc(best, d, func(e entry, d record.KadKey) int { return slices.Compare(e.d[:], d[:]) })
		best = slices.Insert(best, at, entry{i, d})
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]peer.ID, len(best))
	for j, e := range best {
		out[j] = c.ids[e.i]
	}
	return out
}

// EstimateNetworkSize estimates how many peers the network holds from the
// peers closest to a target: the i-th closest lies at a distance of about
// i/N of the keyspace, so each gives an estimate i·2²⁵⁶/dᵢ; the median of
// those is returned. It returns len(peers) when there are fewer than 3.
func EstimateNetworkSize(target record.KadKey, peers []peer.ID) int {
	closest := Closest(target, peers, 20)
	if len(closest) < 3 {
		return len(peers)
	}
	space := new(big.Float).SetInt(new(big.Int).Lsh(big.NewInt(1), 256))
	var ests []float64
	for i, p := range closest {
		d := xor(PeerKey(p), target)
		dist := new(big.Float).SetInt(new(big.Int).SetBytes(d[:]))
		if dist.Sign() == 0 {
			continue
		}
		e, _ := new(big.Float).Quo(new(big.Float).Mul(space, big.NewFloat(float64(i+1))), dist).Float64()
		ests = append(ests, e)
	}
	if len(ests) == 0 {
		return len(peers)
	}
	slices.Sort(ests)
	n := int(math.Round(ests[len(ests)/2]))
	return max(n, len(closest))
}

// RegionBits returns the region prefix length for a network of n peers and
// bucket size k: the longest prefix whose regions still hold about 2k peers
// or more, so that each region most likely holds the k closest peers of all
// its keys and a few lookups find them (see the package doc).
func RegionBits(n, k int) int {
	if n <= 0 || k <= 0 {
		return 0
	}
	bits := int(math.Floor(math.Log2(float64(n) / float64(2*k))))
	return max(0, min(bits, 32))
}

// regionTarget is the lookup target of a region: its midpoint.
func regionTarget(r record.Region) record.KadKey {
	t := r.Start()
	if r.Bits < record.KadKeySize*8 {
		t[r.Bits/8] |= 0x80 >> uint(r.Bits%8)
	}
	return t
}

// sleep waits for d or ctx, reporting whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
