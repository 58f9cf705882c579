package main_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	levelds "github.com/ipfs/go-ds-leveldb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-base32"
	"github.com/multiformats/go-multihash"
)

// TestImportFromDatastore: `kadstore import --from-datastore` reads the
// /providers/ entries of a go-libp2p-kad-dht LevelDB datastore (the format
// Kubo uses by default) into a data directory, skips and reports a bad entry,
// and leaves other keys alone.
func TestImportFromDatastore(t *testing.T) {
	dsDir := filepath.Join(t.TempDir(), "datastore")
	d, err := levelds.NewDatastore(dsDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	put := func(k string, v []byte) {
		t.Helper()
		if err := d.Put(ctx, ds.NewKey(k), v); err != nil {
			t.Fatal(err)
		}
	}
	b32 := base32.RawStdEncoding.EncodeToString
	now := binary.AppendVarint(nil, time.Now().UnixNano())
	var want []string
	for i := range 3 {
		sum := sha256.Sum256([]byte(fmt.Sprint("content ", i)))
		mh, err := multihash.Encode(sum[:], multihash.SHA2_256)
		if err != nil {
			t.Fatal(err)
		}
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		put("/providers/"+b32(mh)+"/"+b32([]byte(p)), now)
		want = append(want, p.String())
	}
	put("/providers/"+b32([]byte("key"))+"/"+b32([]byte("not a peer id")), now) // bad peer ID
	put("/blocks/somecid", []byte("a block, not a provider record"))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(t.TempDir(), "data")
	stdout, stderr, code := kadstore(t, "import", "--data", data, "--from-datastore", dsDir)
	if code != 0 {
		t.Fatalf("import: exit %d: %s %s", code, stdout, stderr)
	}
	for _, s := range []string{"imported 3 provider records", "skipped 1", "skipped 1: bad peer ID"} {
		if !bytes.Contains(stdout, []byte(s)) {
			t.Errorf("summary lacks %q:\n%s", s, stdout)
		}
	}
	stdout, stderr, code = kadstore(t, "ls", "providers", "--data", data)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	if n := strings.Count(string(stdout), "\n"); n != 3 {
		t.Fatalf("ls listed %d records, want 3:\n%s", n, stdout)
	}
	for _, p := range want {
		if !bytes.Contains(stdout, []byte(p)) {
			t.Errorf("provider %s not imported:\n%s", p, stdout)
		}
	}

	// A directory that is no datastore gets a clear error.
	_, stderr, code = kadstore(t, "import", "--data", data, "--from-datastore", t.TempDir())
	if code == 0 || !bytes.Contains(stderr, []byte("not a LevelDB or Pebble datastore")) {
		t.Fatalf("import from an empty directory: exit %d: %s", code, stderr)
	}
}
