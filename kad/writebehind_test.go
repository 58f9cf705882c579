package kad_test

import (
	"bufio"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// TestWriteBehindServesAndCommits holds the store's commits: a received
// provider record is served by GET_PROVIDERS while its commit waits, and
// Close commits it before returning.
func TestWriteBehindServesAndCommits(t *testing.T) {
	mem := memstore.New(store.Options{})
	t.Cleanup(func() { mem.Close() })
	entered, open := make(chan struct{}, 10), make(chan struct{})
	held := &storetest.FailStore{Store: mem, Fail: func(_ context.Context, op string) error {
		if op == storetest.OpAddProviders {
			entered <- struct{}{}
			<-open
		}
		return nil
	}}
	n := newKadNode(t, held)
	var release sync.Once
	// Registered after the node's, so it runs first: on failure the node's
	// Close must not wait for a commit held forever.
	t.Cleanup(func() { release.Do(func() { close(open) }) })
	client := newHost(t)
	me := pb.Peer{ID: []byte(client.ID()), Addrs: [][]byte{client.Addrs()[0].Bytes()}}

	s := rawStream(t, client, n)
	r := bufio.NewReader(s)
	if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte("held"), ProviderPeers: []pb.Peer{me}})); err != nil {
		t.Fatal(err)
	}
	<-entered // the commit has started, and waits
	resp := roundTrip(t, s, r, &pb.Message{Type: pb.GetProviders, Key: []byte("held")})
	if !containsPeer(resp.ProviderPeers, client.ID()) {
		t.Fatalf("GET_PROVIDERS while the record's commit waits: %d providers, want the client", len(resp.ProviderPeers))
	}
	if recs, err := mem.Providers(context.Background(), []byte("held"), 0); err != nil || len(recs) != 0 {
		t.Fatalf("store has %d records (%v) before the commit ended", len(recs), err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "the write-behind gauge", func() bool {
		return metric(t, n.reg, "kadstore_kad_write_behind_records", nil) == 1
	})

	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	release.Do(func() { close(open) })
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	recs, err := mem.Providers(context.Background(), []byte("held"), 0)
	if err != nil || len(recs) != 1 || recs[0].Provider != client.ID() {
		t.Fatalf("after Close the store has %v (%v), want the client's record", recs, err)
	}
}
