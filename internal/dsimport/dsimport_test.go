package dsimport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	levelds "github.com/ipfs/go-ds-leveldb"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem"
	"github.com/multiformats/go-base32"
	"github.com/syndtr/goleveldb/leveldb/opt"

	"github.com/kadstore/kadstore/internal/dsimport"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// backend creates a datastore the way Kubo does, and writes raw keys into it
// below the datastore API (for entries no datastore user would write).
type backend struct {
	name   string
	format dsimport.Format
	open   func(t testing.TB, dir string) ds.Batching
	rawPut func(t testing.TB, d ds.Batching, k, v []byte)
}

var backends = []backend{
	{
		name:   "leveldb",
		format: dsimport.LevelDB,
		open: func(t testing.TB, dir string) ds.Batching {
			// Kubo's default levelds spec: compression "none".
			d, err := levelds.NewDatastore(dir, &levelds.Options{Compression: opt.NoCompression})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		rawPut: func(t testing.TB, d ds.Batching, k, v []byte) {
			if err := d.(*levelds.Datastore).DB.Put(k, v, nil); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name:   "pebble",
		format: dsimport.Pebble,
		open: func(t testing.TB, dir string) ds.Batching {
			// Kubo's pebbleds plugin ratchets new stores to the newest format.
			d, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(&pebble.Options{FormatMajorVersion: pebble.FormatNewest}))
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		rawPut: func(t testing.TB, d ds.Batching, k, v []byte) {
			if err := d.(*pebbleds.Datastore).DB.Set(k, v, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
	},
}

func dsKey(prefix string, key []byte, p peer.ID) string {
	return prefix + base32.RawStdEncoding.EncodeToString(key) + "/" + base32.RawStdEncoding.EncodeToString([]byte(p))
}

func timeValue(t time.Time) []byte {
	return binary.AppendVarint(nil, t.UnixNano())
}

func put(t testing.TB, d ds.Datastore, k string, v []byte) {
	t.Helper()
	if err := d.Put(context.Background(), ds.NewKey(k), v); err != nil {
		t.Fatal(err)
	}
}

func closeDS(t testing.TB, d ds.Batching) {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// pair is one (key, provider) of a fixture, with the expiry it must get.
type pair struct {
	key      []byte
	provider peer.ID
	// expires is the exact expiry, or, when zero, the expiry lies within
	// [after, before] (a record written by ProviderManager at its own clock).
	expires       time.Time
	after, before time.Time
}

// addWithProviderManager writes nKeys×nProviders records through
// go-libp2p-kad-dht's own ProviderManager, with addresses, and returns them
// with the range their expiry must lie in.
func addWithProviderManager(t testing.TB, rng *rand.Rand, d ds.Batching, nKeys, nProviders int) []pair {
	t.Helper()
	ctx := context.Background()
	ps, err := pstoremem.NewPeerstore()
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	// CleanupInterval(0): no GC sweep while the test writes.
	pm, err := records.NewProviderManager(storetest.RandomPeer(rng), ps, d, records.CleanupInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	var pairs []pair
	start := time.Now()
	for range nKeys {
		key := storetest.RandomKey(rng)
		for range nProviders {
			p := storetest.RandomPeer(rng)
			if err := pm.AddProvider(ctx, key, peer.AddrInfo{ID: p, Addrs: storetest.RandomAddrs(rng, 2)}); err != nil {
				t.Fatal(err)
			}
			pairs = append(pairs, pair{key: key, provider: p})
		}
	}
	if err := pm.Close(); err != nil { // flushes its write buffer
		t.Fatal(err)
	}
	end := time.Now()
	for i := range pairs {
		pairs[i].after, pairs[i].before = start.Add(dsimport.DefaultTTL), end.Add(dsimport.DefaultTTL)
	}
	return pairs
}

// snapshot describes every file under dir: size, mode, modification time and
// content hash.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		// LOCK is not read: closing any descriptor of a file drops the
		// classic fcntl lock this process holds on it (pebble's, while a
		// test holds a store open).
		if fi.Mode().IsRegular() && d.Name() != "LOCK" {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func checkUnchanged(t testing.TB, dir string, before map[string]string) {
	t.Helper()
	after := snapshot(t, dir)
	for name, b := range before {
		if a, ok := after[name]; !ok {
			t.Errorf("import removed %s", name)
		} else if a != b {
			t.Errorf("import changed %s: %s -> %s", name, b, a)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("import created %s", name)
		}
	}
}

// allProviders returns every live provider record of s.
func allProviders(t testing.TB, s store.Store) []store.ProviderRecord {
	t.Helper()
	var out []store.ProviderRecord
	for r, err := range store.ScanProviders(context.Background(), s, store.ScanOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func checkPairs(t testing.TB, s store.Store, pairs []pair) {
	t.Helper()
	for _, p := range pairs {
		recs, err := s.Providers(context.Background(), p.key, 0)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(recs, func(r store.ProviderRecord) bool { return r.Provider == p.provider })
		if i < 0 {
			t.Errorf("key %x: provider %s not imported", p.key, p.provider)
			continue
		}
		r := recs[i]
		if len(r.Addrs) != 0 {
			t.Errorf("key %x provider %s: addresses %v, want none (the datastore has none)", p.key, p.provider, r.Addrs)
		}
		if !p.expires.IsZero() {
			if r.Expires.UnixMilli() != p.expires.UnixMilli() {
				t.Errorf("key %x provider %s: expires %v, want %v", p.key, p.provider, r.Expires.UTC(), p.expires.UTC())
			}
		} else if r.Expires.UnixMilli() < p.after.UnixMilli() || r.Expires.UnixMilli() > p.before.UnixMilli() {
			t.Errorf("key %x provider %s: expires %v, want within [%v, %v] (added + 48 h)",
				p.key, p.provider, r.Expires.UTC(), p.after.UTC(), p.before.UTC())
		}
	}
}

// TestImport builds a datastore in each format with go-libp2p-kad-dht's
// ProviderManager, adds entries at chosen times and corrupt entries below it,
// and checks that Import stores every valid record with its expiry, skips and
// counts the rest without stopping, and leaves the directory untouched.
func TestImport(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rng := storetest.NewRand(t)
			dir := t.TempDir()
			d := b.open(t, dir)
			pairs := addWithProviderManager(t, rng, d, 5, 3)

			now := time.Now().Add(time.Minute)
			ttl := dsimport.DefaultTTL
			// Entries in the documented format at chosen times.
			fresh := pair{key: storetest.RandomKey(rng), provider: storetest.RandomPeer(rng), expires: now.Add(time.Hour)}
			put(t, d, dsKey("/providers/", fresh.key, fresh.provider), timeValue(fresh.expires.Add(-ttl)))
			// A second provider for a key ProviderManager wrote.
			shared := pair{key: pairs[0].key, provider: storetest.RandomPeer(rng), expires: now.Add(ttl - 3*time.Hour)}
			put(t, d, dsKey("/providers/", shared.key, shared.provider), timeValue(now.Add(-3*time.Hour)))
			// Written by a clock two hours ahead: clamped to now + TTL.
			future := pair{key: storetest.RandomKey(rng), provider: storetest.RandomPeer(rng), expires: now.Add(ttl)}
			put(t, d, dsKey("/providers/", future.key, future.provider), timeValue(now.Add(2*time.Hour)))
			// Expired by a minute, and long ago.
			put(t, d, dsKey("/providers/", storetest.RandomKey(rng), storetest.RandomPeer(rng)), timeValue(now.Add(-ttl-time.Minute)))
			put(t, d, dsKey("/providers/", storetest.RandomKey(rng), storetest.RandomPeer(rng)), timeValue(now.Add(-30*24*time.Hour)))
			// Other records of a node's datastore, outside the provider range:
			// never read, so never counted.
			put(t, d, "/pk/"+base32.RawStdEncoding.EncodeToString([]byte("x")), []byte("public key"))
			put(t, d, "/local/filesroot", []byte("cid"))
			put(t, d, "/providersX/AAAA/BBBB", timeValue(now))
			// Corrupt entries, written below the datastore API.
			goodKey := base32.RawStdEncoding.EncodeToString(storetest.RandomKey(rng))
			goodPeer := base32.RawStdEncoding.EncodeToString([]byte(storetest.RandomPeer(rng)))
			corrupt := []struct{ k, v string }{
				{"/providers/" + goodKey, string(timeValue(now))},                                                                                                 // one segment
				{"/providers/" + goodKey + "/" + goodPeer + "/extra", string(timeValue(now))},                                                                     // three
				{"/providers/not+base32!/" + goodPeer, string(timeValue(now))},                                                                                    // bad key
				{"/providers//" + goodPeer, string(timeValue(now))},                                                                                               // empty key
				{"/providers/" + goodKey + "/not+base32!", string(timeValue(now))},                                                                                // bad peer
				{"/providers/" + goodKey + "/" + base32.RawStdEncoding.EncodeToString([]byte("not a peer")), ""},                                                  // bad peer
				{"/providers/" + goodKey + "/\xff\x00\xfe", string(timeValue(now))},                                                                               // binary garbage
				{"/providers/" + goodKey + "/" + goodPeer, ""},                                                                                                    // empty value
				{"/providers/" + base32.RawStdEncoding.EncodeToString(storetest.RandomKey(rng)) + "/" + goodPeer, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"}, // varint overflow
			}
			for _, c := range corrupt {
				b.rawPut(t, d, []byte(c.k), []byte(c.v))
			}
			closeDS(t, d)
			pairs = append(pairs, fresh, shared, future)

			before := snapshot(t, dir)
			clock := storetest.NewClock(now)
			dst := memstore.New(store.Options{Now: clock.Now})
			t.Cleanup(func() { _ = dst.Close() })
			res, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{Now: clock.Now, BatchSize: 4})
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			checkUnchanged(t, dir, before)

			if res.Format != b.format || res.Dir != dir {
				t.Errorf("read %v at %s, want %v at %s", res.Format, res.Dir, b.format, dir)
			}
			wantReasons := map[string]int64{
				dsimport.ReasonNotProvider: 2,
				dsimport.ReasonBadKey:      2,
				dsimport.ReasonBadPeer:     3,
				dsimport.ReasonBadValue:    2,
				dsimport.ReasonExpired:     2,
			}
			if fmt.Sprint(res.Reasons) != fmt.Sprint(wantReasons) {
				t.Errorf("reasons %v, want %v", res.Reasons, wantReasons)
			}
			if res.Imported != int64(len(pairs)) || res.Skipped != 11 || res.Clamped != 1 {
				t.Errorf("imported %d, skipped %d, clamped %d; want %d, 11, 1", res.Imported, res.Skipped, res.Clamped, len(pairs))
			}
			if len(res.Examples) != int(res.Skipped) {
				t.Errorf("%d examples for %d skipped entries", len(res.Examples), res.Skipped)
			}
			for _, e := range res.Examples {
				if !errors.Is(e, dsimport.ErrBadEntry) {
					t.Errorf("example %v does not wrap ErrBadEntry", e)
				}
			}
			checkPairs(t, dst, pairs)
			if n := len(allProviders(t, dst)); n != len(pairs) {
				t.Errorf("store holds %d provider records, want %d", n, len(pairs))
			}
		})
	}
}

// TestImportLocked checks that a store held open by a running node is
// refused, not read while it changes, and left untouched.
func TestImportLocked(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rng := storetest.NewRand(t)
			dir := t.TempDir()
			d := b.open(t, dir)
			addWithProviderManager(t, rng, d, 2, 2)
			before := snapshot(t, dir)
			dst := memstore.New(store.Options{})
			t.Cleanup(func() { _ = dst.Close() })

			res, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{})
			if !errors.Is(err, dsimport.ErrLocked) {
				t.Fatalf("Import of an open store: %v, want ErrLocked", err)
			}
			if res.Imported != 0 {
				t.Errorf("imported %d records from a locked store", res.Imported)
			}
			checkUnchanged(t, dir, before)
			closeDS(t, d)

			// Once the node has stopped, the same directory imports.
			res, err = dsimport.Import(t.Context(), dir, dst, dsimport.Options{})
			if err != nil || res.Imported != 4 {
				t.Fatalf("Import after close: %d records, %v; want 4", res.Imported, err)
			}
		})
	}
}

// TestImportKuboRepo imports from a Kubo repository root, which holds the
// store in datastore/ (default profile) or pebbleds/ (pebbleds profile).
func TestImportKuboRepo(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rng := storetest.NewRand(t)
			repo := t.TempDir()
			sub := map[dsimport.Format]string{dsimport.LevelDB: "datastore", dsimport.Pebble: "pebbleds"}[b.format]
			for _, name := range []string{"blocks", "keystore"} {
				if err := os.Mkdir(filepath.Join(repo, name), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(repo, "config"), []byte("{}"), 0o600); err != nil {
				t.Fatal(err)
			}
			d := b.open(t, filepath.Join(repo, sub))
			pairs := addWithProviderManager(t, rng, d, 3, 2)
			closeDS(t, d)

			dst := memstore.New(store.Options{})
			t.Cleanup(func() { _ = dst.Close() })
			res, err := dsimport.Import(t.Context(), repo, dst, dsimport.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Dir != filepath.Join(repo, sub) || res.Format != b.format || res.Imported != int64(len(pairs)) {
				t.Errorf("read %v at %s, %d records; want %v at %s, %d", res.Format, res.Dir, res.Imported, b.format, filepath.Join(repo, sub), len(pairs))
			}
			checkPairs(t, dst, pairs)
		})
	}
}

// TestImportBatchRetry checks that a record the store refuses spoils only
// itself, not the batch it came in: the batch is retried record by record.
func TestImportBatchRetry(t *testing.T) {
	rng := storetest.NewRand(t)
	b := backends[0]
	dir := t.TempDir()
	d := b.open(t, dir)
	pairs := addWithProviderManager(t, rng, d, 4, 1)
	crowded := storetest.RandomKey(rng)
	now := time.Now()
	for range 3 {
		put(t, d, dsKey("/providers/", crowded, storetest.RandomPeer(rng)), timeValue(now))
	}
	closeDS(t, d)

	clock := storetest.NewClock(now)
	dst := memstore.New(store.Options{Now: clock.Now, Limits: store.Limits{MaxProvidersPerKey: 2}})
	t.Cleanup(func() { _ = dst.Close() })
	// One batch holds every record, so the third provider of crowded spoils it.
	res, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{Now: clock.Now, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != int64(len(pairs))+2 || res.Skipped != 1 || res.Reasons[dsimport.ReasonTooManyProviders] != 1 {
		t.Errorf("imported %d, skipped %d %v; want %d, 1 for too many providers", res.Imported, res.Skipped, res.Reasons, len(pairs)+2)
	}
	if len(res.Examples) != 1 || !errors.Is(res.Examples[0], store.ErrTooManyProviders) {
		t.Errorf("examples %v, want one wrapping store.ErrTooManyProviders", res.Examples)
	}
	checkPairs(t, dst, pairs)
	if recs, err := dst.Providers(t.Context(), crowded, 0); err != nil || len(recs) != 2 {
		t.Errorf("crowded key: %d providers, %v; want 2", len(recs), err)
	}
}

// TestImportStopsOnStoreError checks that an error of the store itself (not
// of one record) stops the import, and that the result counts what was done.
func TestImportStopsOnStoreError(t *testing.T) {
	rng := storetest.NewRand(t)
	dir := t.TempDir()
	d := backends[0].open(t, dir)
	addWithProviderManager(t, rng, d, 6, 1)
	closeDS(t, d)

	dst := memstore.New(store.Options{Limits: store.Limits{MaxRecords: 3}})
	t.Cleanup(func() { _ = dst.Close() })
	res, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{BatchSize: 2})
	if !errors.Is(err, store.ErrStoreFull) {
		t.Fatalf("Import into a full store: %v, want ErrStoreFull", err)
	}
	if res.Imported != 2 || res.Skipped != 0 {
		t.Errorf("imported %d, skipped %d; want 2 (the first batch), 0", res.Imported, res.Skipped)
	}
}

func TestImportCancelled(t *testing.T) {
	rng := storetest.NewRand(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			d := b.open(t, dir)
			addWithProviderManager(t, rng, d, 2, 1)
			closeDS(t, d)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			dst := memstore.New(store.Options{})
			t.Cleanup(func() { _ = dst.Close() })
			res, err := dsimport.Import(ctx, dir, dst, dsimport.Options{})
			if !errors.Is(err, context.Canceled) || res.Imported != 0 {
				t.Errorf("Import with a cancelled context: %d records, %v; want 0, context.Canceled", res.Imported, err)
			}
		})
	}
}

// TestImportOptions checks the prefix of a namespaced datastore, a TTL other
// than the default, and progress reports.
func TestImportOptions(t *testing.T) {
	rng := storetest.NewRand(t)
	dir := t.TempDir()
	d := backends[0].open(t, dir)
	// An application that wrapped its datastore in a namespace.
	pairs := addWithProviderManager(t, rng, namespace.Wrap(d, ds.NewKey("/dht")), 5, 2)
	now := time.Now().Add(time.Minute)
	young := pair{key: storetest.RandomKey(rng), provider: storetest.RandomPeer(rng), expires: now.Add(30 * time.Minute)}
	put(t, d, dsKey("/dht/providers/", young.key, young.provider), timeValue(now.Add(-30*time.Minute)))
	put(t, d, dsKey("/dht/providers/", storetest.RandomKey(rng), storetest.RandomPeer(rng)), timeValue(now.Add(-2*time.Hour)))
	closeDS(t, d)
	clock := storetest.NewClock(now)

	t.Run("default prefix", func(t *testing.T) {
		dst := memstore.New(store.Options{Now: clock.Now})
		t.Cleanup(func() { _ = dst.Close() })
		res, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{Now: clock.Now})
		if err != nil || res.Imported != 0 || res.Skipped != 0 {
			t.Errorf("default prefix on a namespaced store: imported %d, skipped %d, %v; want 0, 0, nil", res.Imported, res.Skipped, err)
		}
	})
	t.Run("namespace prefix, one hour TTL", func(t *testing.T) {
		dst := memstore.New(store.Options{Now: clock.Now})
		t.Cleanup(func() { _ = dst.Close() })
		type call struct{ done, skipped int64 }
		var calls []call
		res, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{
			Now:       clock.Now,
			Prefix:    "/dht/providers", // the trailing slash is added
			TTL:       time.Hour,
			BatchSize: 3,
			Progress:  func(done, skipped int64) { calls = append(calls, call{done, skipped}) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Imported != int64(len(pairs))+1 || res.Skipped != 1 || res.Reasons[dsimport.ReasonExpired] != 1 {
			t.Errorf("imported %d, skipped %d %v; want %d, 1 expired", res.Imported, res.Skipped, res.Reasons, len(pairs)+1)
		}
		for i := range pairs {
			pairs[i].after = pairs[i].after.Add(time.Hour - dsimport.DefaultTTL)
			pairs[i].before = pairs[i].before.Add(time.Hour - dsimport.DefaultTTL)
		}
		checkPairs(t, dst, append(pairs, young))
		if len(calls) < int(res.Imported)/3 {
			t.Errorf("%d progress reports for %d records in batches of 3", len(calls), res.Imported)
		}
		for i := 1; i < len(calls); i++ {
			if calls[i].done < calls[i-1].done || calls[i].skipped < calls[i-1].skipped {
				t.Errorf("progress went back: %v", calls)
			}
		}
		if len(calls) == 0 || calls[len(calls)-1] != (call{res.Imported, res.Skipped}) {
			t.Errorf("last progress report %v, want %d imported %d skipped", calls, res.Imported, res.Skipped)
		}
	})
}

// TestDetect checks format detection from directory listings alone.
func TestDetect(t *testing.T) {
	levelFiles := []string{"CURRENT", "LOCK", "LOG", "MANIFEST-000002", "000001.log", "000005.ldb"}
	pebbleFiles := []string{"LOCK", "MANIFEST-000001", "OPTIONS-000003", "marker.format-version.000011.024", "marker.manifest.000001.MANIFEST-000001", "000005.sst"}
	for _, c := range []struct {
		name   string
		files  []string // a trailing slash makes a directory
		sub    string   // where the store is, relative to the directory given
		format dsimport.Format
		err    error
	}{
		{name: "leveldb", files: levelFiles, format: dsimport.LevelDB},
		{name: "pebble", files: pebbleFiles, format: dsimport.Pebble},
		{name: "pebble format 1", files: []string{"CURRENT", "LOCK", "MANIFEST-000001", "OPTIONS-000003", "000002.log"}, format: dsimport.Pebble},
		{name: "badger", files: []string{"KEYREGISTRY", "MANIFEST", "000001.vlog"}, err: dsimport.ErrUnsupportedFormat},
		{name: "empty", err: dsimport.ErrUnknownFormat},
		{name: "flatfs", files: []string{"SHARDING", "_README", "AB/"}, err: dsimport.ErrUnknownFormat},
		{name: "kubo repo", files: append([]string{"config", "version", "blocks/", "keystore/"}, prefixAll("datastore/", levelFiles)...), sub: "datastore", format: dsimport.LevelDB},
		{name: "kubo pebbleds repo", files: append([]string{"config", "keystore/"}, prefixAll("pebbleds/", pebbleFiles)...), sub: "pebbleds", format: dsimport.Pebble},
		{name: "kubo badgerds repo", files: []string{"config", "badgerds/KEYREGISTRY", "badgerds/000001.vlog"}, err: dsimport.ErrUnsupportedFormat},
		{name: "two stores", files: append(prefixAll("datastore/", levelFiles), prefixAll("pebbleds/", pebbleFiles)...), err: dsimport.ErrUnknownFormat},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			makeFiles(t, dir, c.files)
			path, f, err := dsimport.Detect(dir)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Detect: %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || f != c.format || path != filepath.Join(dir, c.sub) {
				t.Fatalf("Detect: %s %v %v, want %s %v", path, f, err, filepath.Join(dir, c.sub), c.format)
			}
		})
	}
	if _, _, err := dsimport.Detect(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Detect of a missing directory: %v, want fs.ErrNotExist", err)
	}
}

// TestImportUnsupportedPebble checks that a Pebble store pebble v2 cannot read
// is refused with a clear error before pebble touches it.
func TestImportUnsupportedPebble(t *testing.T) {
	for _, c := range []struct {
		name  string
		files []string
		want  string
	}{
		{"format 1", []string{"CURRENT", "LOCK", "MANIFEST-000001", "OPTIONS-000003", "000002.log"}, "format major version 1"},
		{"format 12", []string{"LOCK", "MANIFEST-000001", "OPTIONS-000003", "marker.format-version.000009.012"}, "format major version 12"},
		// The highest iteration of the marker is the current one.
		{"format 99", []string{"LOCK", "MANIFEST-000001", "OPTIONS-000003", "marker.format-version.000001.016", "marker.format-version.000002.099"}, "format major version 99"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			makeFiles(t, dir, c.files)
			before := snapshot(t, dir)
			dst := memstore.New(store.Options{})
			t.Cleanup(func() { _ = dst.Close() })
			_, err := dsimport.Import(t.Context(), dir, dst, dsimport.Options{})
			if !errors.Is(err, dsimport.ErrUnsupportedFormat) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Errorf("Import: %v, want ErrUnsupportedFormat naming %q", err, c.want)
			}
			checkUnchanged(t, dir, before)
		})
	}
}

// TestDefaults pins the defaults to go-libp2p-kad-dht's own constants.
func TestDefaults(t *testing.T) {
	if dsimport.DefaultTTL != amino.DefaultProvideValidity {
		t.Errorf("DefaultTTL %v, go-libp2p-kad-dht's provide validity %v", dsimport.DefaultTTL, amino.DefaultProvideValidity)
	}
	if dsimport.DefaultPrefix != records.ProvidersKeyPrefix {
		t.Errorf("DefaultPrefix %q, go-libp2p-kad-dht's %q", dsimport.DefaultPrefix, records.ProvidersKeyPrefix)
	}
}

func prefixAll(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

func makeFiles(t testing.TB, dir string, names []string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if n[len(n)-1] == '/' {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkImport imports a datastore of 100 000 provider records (20 000
// keys × 5 providers, written in the DHT's format) into a memstore.
//
//	go test ./internal/dsimport -run '^$' -bench Import -benchtime 5x
func BenchmarkImport(b *testing.B) {
	const keys, providers = 20_000, 5
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			dir := b.TempDir()
			d := be.open(b, dir)
			ctx := context.Background()
			batch, err := d.Batch(ctx)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for i := range keys {
				key := storetest.RandomKey(rng)
				for j := range providers {
					added := now.Add(-time.Duration(i*providers+j) * time.Millisecond)
					if err := batch.Put(ctx, ds.NewKey(dsKey("/providers/", key, storetest.RandomPeer(rng))), timeValue(added)); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := batch.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			closeDS(b, d)
			b.ResetTimer()
			for range b.N {
				dst := memstore.New(store.Options{})
				res, err := dsimport.Import(ctx, dir, dst, dsimport.Options{})
				if err != nil || res.Imported != keys*providers {
					b.Fatalf("imported %d, %v", res.Imported, err)
				}
				_ = dst.Close()
			}
			b.ReportMetric(float64(keys*providers*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
