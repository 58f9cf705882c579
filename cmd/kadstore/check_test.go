package main_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// `kadstore check` exits 0 on a sound store and 1, naming the file, on one
// with a damaged sstable; --repair copies what can be read into a new data
// directory that checks sound; and `kadstore node` on the damaged directory
// starts, serves the keys whose blocks are sound through the API, says it
// is degraded, and stays up. (The node
// used to die on the first lookup that read the damaged block.)
func TestCheckAndRepairDamagedStore(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	n := startNode(t, data)
	self, err := peer.Decode(n.id)
	if err != nil {
		t.Fatal(err)
	}
	if code := n.stop(t); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	// 20 000 provider records of the node's own peer ID, written directly.
	sdir := filepath.Join(data, "store")
	s, err := pebblestore.Open(sdir, pebblestore.Options{IndexedPeers: []peer.ID{self}})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	expires := time.Now().Add(time.Hour)
	for i := range 200 {
		var batch []store.ProviderRecord
		for j := range 100 {
			c := testCID(t, fmt.Sprintf("check-%d-%d", i, j))
			keys = append(keys, c.String())
			batch = append(batch, store.ProviderRecord{Key: c.Hash(), Provider: self, Expires: expires})
		}
		if err := s.AddProviders(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := kadstore(t, "check", "--data", data)
	if code != 0 || !bytes.Contains(out, []byte("20000 provider records")) || !bytes.HasSuffix(out, []byte("ok\n")) {
		t.Fatalf("check of a sound store: exit %d\n%s%s", code, out, errOut)
	}

	tables, err := filepath.Glob(filepath.Join(sdir, "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no sstable: %v", err)
	}
	slices.SortFunc(tables, func(a, b string) int { return int(fileSize(t, b) - fileSize(t, a)) })
	damage(t, tables[0], 0.2, 0.6)

	out, errOut, code = kadstore(t, "check", "--data", data)
	if code != 1 || !bytes.Contains(out, []byte("DAMAGE: sstable "+filepath.Base(tables[0]))) {
		t.Fatalf("check of a damaged store: exit %d\n%s%s", code, out, errOut)
	}
	if bytes.Contains(errOut, []byte("panic")) {
		t.Fatalf("check panicked:\n%s", errOut)
	}

	// Export writes every record it can read and then fails, saying why.
	out, errOut, code = kadstore(t, "export", "--data", data)
	lines := bytes.Count(out, []byte("\n"))
	if code != 1 || lines == 0 || lines >= len(keys) || !bytes.Contains(errOut, []byte("could not be read")) {
		t.Fatalf("export of a damaged store: exit %d, %d lines\n%s", code, lines, errOut)
	}

	fixed := filepath.Join(t.TempDir(), "fixed")
	out, errOut, code = kadstore(t, "check", "--data", data, "--repair", fixed)
	if code != 0 || !bytes.Contains(out, []byte("the copy checks sound")) {
		t.Fatalf("check --repair: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(fixed, "identity.key")); err != nil {
		t.Fatalf("the repaired directory has no identity: %v", err)
	}

	// The node on the damaged directory: up, and serving the keys whose
	// blocks are sound.
	n = startNode(t, data)
	served, failed := 0, 0
	for _, k := range keys {
		code, body := httpDo(t, "GET", n.api+"/routing/v1/providers/"+k, "")
		// A key in a damaged block: the store's error is logged and the
		// answer is what the DHT finds (nothing, on a network of one).
		if code == 200 && strings.Contains(string(body), n.id) {
			served++
		} else {
			failed++
		}
	}
	if served < len(keys)/2 || failed == 0 {
		t.Fatalf("node on the damaged store: %d keys served, %d failed", served, failed)
	}
	code, body := httpDo(t, "GET", n.api+"/healthz", "")
	if code != 200 || !strings.Contains(string(body), "degraded") || !strings.Contains(string(body), filepath.Base(tables[0])) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code := n.stop(t); code != 0 {
		t.Fatalf("node on the damaged store: exit %d\n%s", code, n.stderr)
	}
	if strings.Contains(n.stderr.String(), "panic") {
		t.Fatalf("the node's log has a panic:\n%s", n.stderr)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// damage flips 4 bytes of the file at offsets in [from, to) of its size.
func damage(t *testing.T, path string, from, to float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 1))
	lo, hi := int(float64(len(b))*from), int(float64(len(b))*to)
	for range 4 {
		b[lo+rng.IntN(hi-lo)] ^= 0xa5
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
