package pebblestore_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// soundStore writes n numbered records (one in five a value record) with
// the peer of record 0 indexed, and closes the store.
func soundStore(t *testing.T, n int64) (string, pebblestore.Options) {
	t.Helper()
	dir := t.TempDir()
	opts := testOptions(store.Options{Logger: slog.New(slog.DiscardHandler)})
	opts.IndexedPeers = append(opts.IndexedPeers, ackProvider(0, time.Now()).Provider)
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	writeSequential(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, opts
}

func mustCheck(t *testing.T, dir string, opts pebblestore.Options) *pebblestore.CheckReport {
	t.Helper()
	rep, err := pebblestore.Check(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestCheckSoundStore(t *testing.T) {
	dir, opts := soundStore(t, 2000)
	rep := mustCheck(t, dir, opts)
	if !rep.OK() || rep.ProviderRecords != 1600 || rep.ValueRecords != 400 || rep.Tables == 0 {
		t.Fatalf("sound store: %+v", rep)
	}
}

// Each fault Check looks for, made by hand in an otherwise sound store.
func TestCheckFindsFaults(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		fault func(s *pebblestore.Store) error
		want  string
	}{
		{"record checksum", func(s *pebblestore.Store) error {
			r := ackProvider(1, now)
			return pebblestore.CorruptProvider(s, r.Key, r.Provider, []byte("not a record at all, but long enough"))
		}, "fails its checksum"},
		{"time index", func(s *pebblestore.Store) error { return pebblestore.DeleteFirst(s, 'e') }, "time index: no entry"},
		{"peer index", func(s *pebblestore.Store) error { return pebblestore.DeleteFirst(s, 'o') }, "peer index: no entry"},
		{"counts", pebblestore.SkewCounts, "record counts say"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, opts := soundStore(t, 500)
			s, err := pebblestore.Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.fault(s); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			rep := mustCheck(t, dir, opts)
			if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
				t.Fatalf("want a problem with %q: %q", tc.want, rep.Problems)
			}
		})
	}
}

// Check names a damaged sstable; Salvage copies every record a lookup could
// read into a new store, which checks sound.
func TestCheckAndSalvageDamagedTable(t *testing.T) {
	ctx := context.Background()
	dir, opts, n, now := damagedStore(t)
	rep := mustCheck(t, dir, opts)
	if rep.OK() || !strings.Contains(rep.Problems[0], ".sst") {
		t.Fatalf("damaged sstable: %q", rep.Problems)
	}
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	readable := 0
	for i := range n {
		if got, err := s.Providers(ctx, ackProvider(i*5, now).Key, 0); err == nil && len(got) == 1 {
			readable++
		}
	}
	s.Close()

	dst := filepath.Join(t.TempDir(), "salvaged")
	sr, err := pebblestore.Salvage(ctx, dir, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sr.ProviderRecords < int64(readable)*99/100 || sr.ProviderRecords >= n || sr.Skipped == 0 {
		t.Fatalf("salvaged %+v; %d of %d were readable", sr, readable, n)
	}
	if rep := mustCheck(t, dst, opts); !rep.OK() || rep.ProviderRecords != sr.ProviderRecords {
		t.Fatalf("salvaged store: %+v", rep)
	}
	if _, err := pebblestore.Salvage(ctx, dir, dst, opts); err == nil {
		t.Fatal("salvaged into a directory that holds a store")
	}
}
