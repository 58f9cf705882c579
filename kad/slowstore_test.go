package kad_test

import (
	"bufio"
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// blockingStore is a store whose record calls (GetValue, Providers,
// AddProviders) block until released, ignoring their context: the worst a
// slow disk can do.
type blockingStore struct {
	*storetest.FailStore
	release chan struct{}
	mu      sync.Mutex
	entered int
}

func newBlockingStore() *blockingStore {
	b := &blockingStore{release: make(chan struct{})}
	b.FailStore = &storetest.FailStore{Store: memstore.New(store.Options{}), Fail: func(_ context.Context, op string) error {
		switch op {
		case storetest.OpGetValue, storetest.OpProviders, storetest.OpAddProviders:
			b.mu.Lock()
			b.entered++
			b.mu.Unlock()
			<-b.release
		}
		return nil
	}}
	return b
}

func (b *blockingStore) calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entered
}

// TestSlowStore shows the concurrency contract: while every store call
// blocks, requests that need the store fail at their deadline (whether they
// got a store slot or waited for one), and PING and FIND_NODE keep being
// answered promptly; once the store recovers, so does the node.
func TestSlowStore(t *testing.T) {
	bs := newBlockingStore()
	const deadline = 300 * time.Millisecond
	n := newKadNode(t, bs, kad.RequestTimeout(deadline), kad.StoreConcurrency(2))
	t.Cleanup(func() { bs.Store.Close() })
	released := false
	release := func() {
		if !released {
			released = true
			close(bs.release)
		}
	}
	t.Cleanup(release) // before the node's Close, which waits for store calls
	peerB := newKadNode(t, nil)
	connect(t, peerB.h, n.h)
	p2ptest.WaitUntil(t, 30*time.Second, "a routing-table peer", func() bool { return len(n.RoutingPeers()) > 0 })

	// Four clients ask for providers at once: two calls enter the store and
	// block, two wait for a slot. All four streams are reset.
	const clients = 4
	failTimes := make([]time.Duration, clients)
	var wg sync.WaitGroup
	for i := range clients {
		s := rawStream(t, newHost(t), n)
		wg.Go(func() {
			start := time.Now()
			if _, err := s.Write(frame(&pb.Message{Type: pb.GetProviders, Key: []byte("k")})); err != nil {
				t.Error(err)
				return
			}
			expectReset(t, s)
			failTimes[i] = time.Since(start)
		})
	}
	// Meanwhile another peer's PINGs and FIND_NODEs are answered.
	s := rawStream(t, newHost(t), n)
	r := bufio.NewReader(s)
	var pingTimes []time.Duration
	p2ptest.WaitUntil(t, 30*time.Second, "both store slots to be taken", func() bool { return bs.calls() == 2 })
	for range 20 {
		start := time.Now()
		if resp := roundTrip(t, s, r, &pb.Message{Type: pb.Ping}); resp.Type != pb.Ping {
			t.Fatalf("PING answered with %v", resp.Type)
		}
		resp := roundTrip(t, s, r, &pb.Message{Type: pb.FindNode, Key: []byte(peerB.h.ID())})
		if len(resp.CloserPeers) == 0 {
			t.Fatal("FIND_NODE answered without peers")
		}
		pingTimes = append(pingTimes, time.Since(start))
	}
	wg.Wait()
	if got := metric(t, n.reg, "kadstore_kad_messages_received_total", map[string]string{"type": "GET_PROVIDERS", "outcome": "store_timeout"}); got != clients {
		t.Fatalf("store_timeout outcomes = %v, want %d", got, clients)
	}
	if bs.calls() != 2 {
		t.Fatalf("%d calls entered the store, want 2 (the pool bound)", bs.calls())
	}

	// The store recovers: the blocked calls return, and requests succeed.
	release()
	ctx := ctxTimeout(t, 30*time.Second)
	if err := n.ProvideKey(ctx, []byte("k"), false); err != nil {
		t.Fatal(err)
	}
	resp := roundTrip(t, s, r, &pb.Message{Type: pb.GetProviders, Key: []byte("k")})
	if !containsPeer(resp.ProviderPeers, n.h.ID()) {
		t.Fatalf("GET_PROVIDERS after recovery: %d providers", len(resp.ProviderPeers))
	}

	sort.Slice(pingTimes, func(i, j int) bool { return pingTimes[i] < pingTimes[j] })
	sort.Slice(failTimes, func(i, j int) bool { return failTimes[i] < failTimes[j] })
	t.Logf("store blocked, deadline %v, 2 store slots: GET_PROVIDERS failed after %v .. %v; PING+FIND_NODE round trip median %v, max %v",
		deadline, failTimes[0].Round(time.Millisecond), failTimes[clients-1].Round(time.Millisecond),
		pingTimes[len(pingTimes)/2].Round(time.Microsecond), pingTimes[len(pingTimes)-1].Round(time.Microsecond))
}
