package kad_test

import (
	"bufio"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/internal/pb"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

// faultyStore is a memstore whose calls for the key "boom" panic (as
// pebblestore's Fatalf did on a damaged sstable) and whose AddProviders for
// the key "full" fails with store.ErrNoSpace.
type faultyStore struct{ store.Store }

func (f faultyStore) Providers(ctx context.Context, key []byte, limit int) ([]store.ProviderRecord, error) {
	if string(key) == "boom" {
		panic("pebblestore: on-disk corruption: 000024.sst: checksum mismatch")
	}
	return f.Store.Providers(ctx, key, limit)
}

func (f faultyStore) GetValue(ctx context.Context, key []byte) (store.ValueRecord, error) {
	if string(key) == "boom" {
		panic(fmt.Errorf("block: %w", store.ErrCorrupt))
	}
	return f.Store.GetValue(ctx, key)
}

func (f faultyStore) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	if len(recs) > 0 && string(recs[0].Key) == "full" {
		return fmt.Errorf("pebblestore: add providers: %w", store.ErrNoSpace)
	}
	return f.Store.AddProviders(ctx, recs...)
}

// TestStorePanic: a store call that panics resets the requester's stream,
// counts a store_error and a store panic, and the node serves the next
// requests, store calls included. A store that refuses a write for want of
// space is a store error too, not a rejected record.
func TestStorePanic(t *testing.T) {
	mem := memstore.New(store.Options{})
	t.Cleanup(func() { mem.Close() })
	n := newKadNode(t, faultyStore{mem})
	client := newHost(t)

	for _, req := range []*pb.Message{
		{Type: pb.GetProviders, Key: []byte("boom")},
		{Type: pb.GetValue, Key: []byte("boom")},
	} {
		s := rawStream(t, client, n)
		if _, err := s.Write(frame(req)); err != nil {
			t.Fatal(err)
		}
		expectReset(t, s)
	}

	// The node is alive and its store pool has its slots back.
	me := pb.Peer{ID: []byte(client.ID()), Addrs: [][]byte{client.Addrs()[0].Bytes()}}
	s := rawStream(t, client, n)
	r := bufio.NewReader(s)
	if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte("good"), ProviderPeers: []pb.Peer{me}})); err != nil {
		t.Fatal(err)
	}
	for range 20 { // more calls than the pool has slots
		resp := roundTrip(t, s, r, &pb.Message{Type: pb.GetProviders, Key: []byte("good")})
		if !containsPeer(resp.ProviderPeers, client.ID()) {
			t.Fatalf("GET_PROVIDERS after the panic: %d providers, want the client", len(resp.ProviderPeers))
		}
	}

	// ADD_PROVIDER refused with ErrNoSpace by the write-behind's commit:
	// the record was accepted, its loss is counted.
	s = rawStream(t, client, n)
	if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte("full"), ProviderPeers: []pb.Peer{me}})); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitUntil(t, 30*time.Second, "the ADD_PROVIDER handled", func() bool {
		return metric(t, n.reg, "kadstore_kad_messages_received_total", map[string]string{"type": "ADD_PROVIDER", "outcome": "ok"}) == 2
	})
	if err := n.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, n.reg, "kadstore_kad_write_behind_failed_total", nil); got != 1 {
		t.Errorf("write_behind_failed_total = %v, want 1", got)
	}

	// Without a write-behind, the same ADD_PROVIDER resets the stream: a
	// store error.
	n0 := newKadNode(t, faultyStore{mem}, kad.WriteBehind(0))
	s = rawStream(t, client, n0)
	if _, err := s.Write(frame(&pb.Message{Type: pb.AddProvider, Key: []byte("full"), ProviderPeers: []pb.Peer{me}})); err != nil {
		t.Fatal(err)
	}
	expectReset(t, s)
	p2ptest.WaitUntil(t, 30*time.Second, "ADD_PROVIDER store_error", func() bool {
		return metric(t, n0.reg, "kadstore_kad_messages_received_total", map[string]string{"type": "ADD_PROVIDER", "outcome": "store_error"}) == 1
	})

	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kadstore_kad_store_panics_total", map[string]string{"method": "Providers"}, 1},
		{"kadstore_kad_store_panics_total", map[string]string{"method": "GetValue"}, 1},
		{"kadstore_kad_messages_received_total", map[string]string{"type": "GET_PROVIDERS", "outcome": "store_error"}, 1},
		{"kadstore_kad_messages_received_total", map[string]string{"type": "GET_VALUE", "outcome": "store_error"}, 1},
		{"kadstore_kad_messages_received_total", map[string]string{"type": "GET_PROVIDERS", "outcome": "ok"}, 20},
	} {
		// A message is counted once the node has finished with it, which
		// may be just after the client saw the reset.
		p2ptest.WaitUntil(t, 30*time.Second, fmt.Sprintf("%s%v = %v", m.name, m.labels, m.want), func() bool {
			return metric(t, n.reg, m.name, m.labels) == m.want
		})
	}
	if got := metric(t, n.reg, "kadstore_kad_records_rejected_total", nil); got != 0 {
		t.Errorf("records_rejected_total = %v, want 0 (a full disk is a store error)", got)
	}
}
