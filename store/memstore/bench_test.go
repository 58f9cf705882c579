package memstore_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// filled returns a store holding n provider records (10 per provider),
// live for an hour, and the records.
func filled(b *testing.B, n int) (*memstore.Store, *storetest.Clock, []store.ProviderRecord) {
	b.Helper()
	clock := storetest.NewClock(storetest.Start)
	s := memstore.New(store.Options{Now: clock.Now})
	b.Cleanup(func() { s.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]store.ProviderRecord, n)
	var p = storetest.RandomPeer(rng)
	for i := range recs {
		if i%10 == 0 {
			p = storetest.RandomPeer(rng)
		}
		recs[i] = storetest.NewProviderRecord(rng, storetest.RandomKey(rng), p, clock.Now().Add(time.Hour))
	}
	for i := 0; i < n; i += 1000 {
		if err := s.AddProviders(context.Background(), recs[i:min(i+1000, n)]...); err != nil {
			b.Fatal(err)
		}
	}
	return s, clock, recs
}

func BenchmarkAddProviders(b *testing.B) {
	s, clock, _ := filled(b, 100_000)
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	for b.Loop() {
		r := storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(time.Hour))
		if err := s.AddProviders(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProviders(b *testing.B) {
	s, _, recs := filled(b, 100_000)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if _, err := s.Providers(ctx, recs[i%len(recs)].Key, 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkScanPage reports the cost of one 1000-record page of a 100 000
// record store, per record.
func BenchmarkScanPage(b *testing.B) {
	s, _, _ := filled(b, 100_000)
	ctx := context.Background()
	opts := store.ScanOptions{Kind: store.Providers, Limit: 1000}
	for b.Loop() {
		p, err := s.Scan(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		opts.After = p.Next
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
}

// BenchmarkExpire removes 100 expired records from a store of 100 000 live
// ones per iteration: its cost must not grow with what is stored.
func BenchmarkExpire(b *testing.B) {
	s, clock, _ := filled(b, 100_000)
	rng := rand.New(rand.NewPCG(5, 6))
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		batch := make([]store.ProviderRecord, 100)
		for i := range batch {
			batch[i] = storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(time.Second))
		}
		if err := s.AddProviders(ctx, batch...); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := s.Expire(ctx, clock.Now().Add(time.Second), 0)
		if err != nil || n != 100 {
			b.Fatalf("Expire: %d, %v", n, err)
		}
	}
}
