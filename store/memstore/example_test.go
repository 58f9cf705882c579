package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

func Example() {
	ctx := context.Background()
	clock := storetest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := memstore.New(store.Options{Now: clock.Now})
	defer s.Close()

	for _, name := range []string{"/app/alice", "/app/bob", "/app/carol"} {
		err := s.PutValue(ctx, store.ValueRecord{
			Key:     []byte(name),
			Value:   []byte("hello from " + name[5:]),
			Expires: clock.Now().Add(time.Hour),
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	r, err := s.GetValue(ctx, []byte("/app/bob"))
	fmt.Printf("%s: %s, %v\n", r.Key, r.Value, err)

	// Scan walks records in Kademlia keyspace order (SHA-256 of the key), one
	// page at a time; ScanValues turns the pages into an iterator.
	for r, err := range store.ScanValues(ctx, s, store.ScanOptions{Limit: 2}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %.8s…\n", r.Key, r.KadKey())
	}

	// After an hour the records have expired: they are never returned, and
	// Expire reclaims their space.
	clock.Advance(time.Hour)
	_, err = s.GetValue(ctx, []byte("/app/bob"))
	fmt.Println(err)
	n, _ := s.Expire(ctx, clock.Now(), 0)
	fmt.Println("expired", n)
	// Output:
	// /app/bob: hello from bob, <nil>
	// /app/carol 8d0adea0…
	// /app/alice c2265b83…
	// /app/bob f27413f9…
	// store: not found
	// expired 3
}
