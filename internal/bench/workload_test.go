package bench_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/internal/bench"
	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

var base = time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

func TestWorkloadDeterministic(t *testing.T) {
	a := bench.NewWorkload(7, 1000, base)
	b := bench.NewWorkload(7, 1000, base)
	other := bench.NewWorkload(8, 1000, base)
	batch := a.Fill(make([]record.ProviderRecord, 100), 450)
	for i := int64(0); i < a.N; i++ {
		ra, rb := a.Record(i), b.Record(i)
		if !ra.Equal(rb) {
			t.Fatalf("record %d differs between two workloads of one seed:\n%+v\n%+v", i, ra, rb)
		}
		if ro := other.Record(i); bytes.Equal(ra.Key, ro.Key) || ra.Provider == ro.Provider {
			t.Fatalf("record %d is the same under seeds 7 and 8", i)
		}
		if i >= 450 && i < 550 && !batch[i-450].Equal(ra) {
			t.Fatalf("Fill gave record %d as %+v, Record gives %+v", i, batch[i-450], ra)
		}
	}
}

func TestWorkloadShape(t *testing.T) {
	const n = 9*1000 + 7 // whole blocks plus a partial block with 2 narrow keys
	w := bench.NewWorkload(1, n, base)
	limits := store.Limits{}
	limits.EnsureDefaults()

	keys := map[string]int64{}    // key bytes -> key number
	providers := map[string]int{} // key bytes -> record count
	peers := map[peer.ID]bool{}   // every provider is distinct
	short := 0
	for i := int64(0); i < n; i++ {
		r := w.Record(i)
		if err := limits.CheckProvider(r, base); err != nil {
			t.Fatalf("record %d is not storable: %v", i, err)
		}
		dec, err := mh.Decode(r.Key)
		if err != nil || dec.Code != mh.SHA2_256 || len(r.Key) != 34 {
			t.Fatalf("record %d key %x is not a 34-byte sha2-256 multihash (%v)", i, r.Key, err)
		}
		if len(r.Provider) != bench.PeerIDSize {
			t.Fatalf("record %d: peer ID of %d bytes", i, len(r.Provider))
		}
		if peers[r.Provider] {
			t.Fatalf("record %d reuses provider %s", i, r.Provider)
		}
		peers[r.Provider] = true
		if len(r.Addrs) != 2 {
			t.Fatalf("record %d has %d addresses", i, len(r.Addrs))
		}
		ip, _ := r.Addrs[0].ValueForProtocol(0x04)
		if want := "/ip4/" + ip + "/tcp/4001"; r.Addrs[0].String() != want {
			t.Fatalf("record %d address 0 = %s, want %s", i, r.Addrs[0], want)
		}
		if want := "/ip4/" + ip + "/udp/4001/quic-v1"; r.Addrs[1].String() != want {
			t.Fatalf("record %d address 1 = %s, want %s", i, r.Addrs[1], want)
		}

		j := w.KeyOf(i)
		if !bytes.Equal(w.Key(j), r.Key) {
			t.Fatalf("record %d: KeyOf gives key %d, whose bytes differ from the record's", i, j)
		}
		if prev, ok := keys[string(r.Key)]; ok && prev != j {
			t.Fatalf("key numbers %d and %d have the same bytes", prev, j)
		}
		keys[string(r.Key)] = j
		providers[string(r.Key)]++

		switch ttl := r.Expires.Sub(w.Base); {
		case w.Short(i):
			short++
			if ttl != bench.DefaultShortTTL {
				t.Fatalf("short record %d expires after %v", i, ttl)
			}
		case ttl != bench.DefaultTTL:
			t.Fatalf("record %d expires after %v, want 48h", i, ttl)
		}
	}

	if int64(len(keys)) != w.Keys() {
		t.Errorf("records use %d keys, Keys() = %d", len(keys), w.Keys())
	}
	if want := 1000*5 + 1 + 2; len(keys) != want {
		t.Errorf("%d keys, want %d", len(keys), want)
	}
	if short != int(w.ShortRecords()) || short != n/10 {
		t.Errorf("%d short records, ShortRecords() = %d, want %d", short, w.ShortRecords(), n/10)
	}
	wide := 0
	for k, c := range providers {
		j := keys[k]
		first, count := w.RecordsOf(j)
		if int64(c) != count {
			t.Fatalf("key %d has %d records, RecordsOf says %d", j, c, count)
		}
		if w.KeyOf(first) != j || (first > 0 && w.KeyOf(first-1) == j) {
			t.Fatalf("RecordsOf(%d) starts at record %d, which is not the key's first", j, first)
		}
		switch {
		case j%5 == 0:
			wide++
			if c != bench.WideProviders {
				t.Fatalf("key %d (one in five) has %d providers, want 5", j, c)
			}
		case c != 1:
			t.Fatalf("key %d has %d providers, want 1", j, c)
		}
	}
	if wide != 1001 {
		t.Errorf("%d keys with five providers, want 1001", wide)
	}
}

func TestWorkloadMissingKeys(t *testing.T) {
	w := bench.NewWorkload(3, 900, base)
	present := map[string]bool{}
	for j := int64(0); j < w.Keys(); j++ {
		present[string(w.Key(j))] = true
	}
	for j := int64(0); j < 1000; j++ {
		k := w.MissingKey(j)
		if len(k) != 34 || present[string(k)] {
			t.Fatalf("missing key %d (%x) is a workload key or malformed", j, k)
		}
	}
}

func TestWorkloadPartialBlock(t *testing.T) {
	for n := int64(0); n <= 18; n++ {
		w := bench.NewWorkload(1, n, base)
		var total int64
		for j := int64(0); j < w.Keys(); j++ {
			_, c := w.RecordsOf(j)
			if c == 0 {
				t.Fatalf("n=%d: key %d < Keys() has no records", n, j)
			}
			total += c
		}
		if total != n {
			t.Errorf("n=%d: keys cover %d records", n, total)
		}
	}
}

func BenchmarkWorkloadFill(b *testing.B) {
	w := bench.NewWorkload(1, 1<<40, base)
	batch := make([]record.ProviderRecord, 1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Fill(batch, int64(i)*1000)
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "records/s")
}
