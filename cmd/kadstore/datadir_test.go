package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/boxo/routing/http/client"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// lsKeys runs `kadstore ls KIND` with args and returns the printed keys.
func lsKeys(t *testing.T, kind string, args ...string) []string {
	t.Helper()
	stdout, stderr, code := kadstore(t, append([]string{"ls", kind}, args...)...)
	if code != 0 {
		t.Fatalf("ls %s %q: exit %d\n%s", kind, args, code, stderr)
	}
	var keys []string
	for line := range strings.Lines(string(stdout)) {
		var l struct {
			KeyText string `json:"key_text"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("ls printed %q: %v", line, err)
		}
		keys = append(keys, l.KeyText)
	}
	return keys
}

// Every tool given --data of a running node works, through the API the node
// published there, and prints what it prints once the node has stopped;
// get takes the keys ls printed.
func TestToolsWithTheDataOfARunningNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, dir)
	var keys []string
	for i := range 3 {
		keys = append(keys, testCID(t, "running "+string(rune('a'+i))).String())
	}
	// provide finds the node through --data too.
	if _, stderr, code := kadstore(t, append([]string{"provide", "--data", dir}, keys...)...); code != 0 {
		t.Fatalf("provide --data: exit %d\n%s", code, stderr)
	}
	// An IPNS record, for a value key.
	sk, pub, _ := crypto.GenerateEd25519Key(rand.Reader)
	pid, _ := peer.IDFromPublicKey(pub)
	name := ipns.NameFromPeer(pid)
	p, _ := path.NewPath("/ipfs/" + keys[0])
	rec, err := ipns.NewRecord(sk, p, 1, time.Now().Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(n.api)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.PutIPNS(ctx, name, rec); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := kadstore(t, "stats", "--data", dir)
	if code != 0 || !bytes.Contains(stdout, []byte(`"provider_records": 3`)) || !bytes.Contains(stdout, []byte(`"value_records": 1`)) {
		t.Fatalf("stats --data of a running node: exit %d\n%s%s", code, stdout, stderr)
	}
	provKeys := lsKeys(t, "providers", "--data", dir)
	valueKeys := lsKeys(t, "values", "--data", dir)
	if len(provKeys) != 3 || len(valueKeys) != 1 {
		t.Fatalf("ls --data of a running node: providers %q, values %q", provKeys, valueKeys)
	}
	for _, k := range provKeys {
		if !strings.HasPrefix(k, "bafkrei") {
			t.Errorf("ls printed provider key %q, want a CIDv1 (bafkrei…)", k)
		}
	}
	if want := "/ipns/" + name.String(); valueKeys[0] != want {
		t.Errorf("ls printed value key %q, want %q", valueKeys[0], want)
	}
	for _, k := range append(provKeys, valueKeys...) {
		if stdout, stderr, code := kadstore(t, "get", k, "--data", dir); code != 0 || len(stdout) == 0 {
			t.Errorf("get %s --data of a running node: exit %d\n%s", k, code, stderr)
		}
	}
	running := filepath.Join(t.TempDir(), "running.ndjson")
	if _, stderr, code := kadstore(t, "export", "--data", dir, "-o", running); code != 0 {
		t.Fatalf("export --data of a running node: exit %d\n%s", code, stderr)
	}

	if code := n.stop(t); code != 0 {
		t.Fatalf("node exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "api")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the api file outlived a clean stop: %v", err)
	}

	// The same commands on the stopped node's directory print the same.
	stopped := filepath.Join(t.TempDir(), "stopped.ndjson")
	if _, stderr, code := kadstore(t, "export", "--data", dir, "-o", stopped); code != 0 {
		t.Fatalf("export --data of a stopped node: exit %d\n%s", code, stderr)
	}
	a, _ := os.ReadFile(running)
	b, _ := os.ReadFile(stopped)
	if bytes.Count(a, []byte("\n")) != 4 || !bytes.Equal(a, b) {
		t.Fatalf("export through the node and from the directory differ:\n%s\nvs\n%s", a, b)
	}
	if got := lsKeys(t, "providers", "--data", dir); strings.Join(got, " ") != strings.Join(provKeys, " ") {
		t.Fatalf("ls of the stopped node: %q, running: %q", got, provKeys)
	}
	for _, k := range append(provKeys, valueKeys...) {
		if stdout, stderr, code := kadstore(t, "get", k, "--data", dir); code != 0 || len(stdout) == 0 {
			t.Errorf("get %s --data of a stopped node: exit %d\n%s", k, code, stderr)
		}
	}
	if stdout, stderr, code := kadstore(t, "stats", "--data", dir); code != 0 || !bytes.Contains(stdout, []byte(`"provider_records": 3`)) {
		t.Fatalf("stats --data of a stopped node: exit %d\n%s%s", code, stdout, stderr)
	}
}

// The lock, not the api file, says whether a node runs: the file a killed
// node leaves is ignored, and the next node replaces it.
func TestToolsIgnoreTheAPIFileOfAKilledNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, dir)
	if _, stderr, code := kadstore(t, "provide", "--data", dir, testCID(t, "killed").String()); code != 0 {
		t.Fatalf("provide: %s", stderr)
	}
	n.cmd.Process.Kill()
	<-n.done
	if _, err := os.Stat(filepath.Join(dir, "api")); err != nil {
		t.Fatalf("a killed node left no api file (%v): the test proves nothing", err)
	}
	stdout, stderr, code := kadstore(t, "stats", "--data", dir)
	if code != 0 || !bytes.Contains(stdout, []byte(`"provider_records": 1`)) {
		t.Fatalf("stats --data after kill -9: exit %d\n%s%s", code, stdout, stderr)
	}
	// provide needs a running node and says so.
	_, stderr, code = kadstore(t, "provide", "--data", dir, testCID(t, "x").String())
	if code != 1 || !bytes.Contains(stderr, []byte("no node runs on")) {
		t.Fatalf("provide with no node: exit %d\n%s", code, stderr)
	}
	n2 := startNode(t, dir)
	if stdout, _, code := kadstore(t, "stats", "--data", dir); code != 0 || !bytes.Contains(stdout, []byte(`"routing_table_size"`)) {
		t.Fatalf("stats --data of the restarted node did not go through its API: exit %d\n%s", code, stdout)
	}
	n2.stop(t)
}

// import says what is wrong with its command line and its input, and
// fails when it imported nothing.
func TestImportReportsFailures(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.ndjson")
	if err := os.WriteFile(bad, []byte("{garbage\n{\"kind\":\"nope\",\"key\":\"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy\",\"expires_ms\":1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := kadstore(t, "import", "--data", filepath.Join(tmp, "d1"), bad)
	if code != 1 || !bytes.Contains(stdout, []byte("imported 0 records, skipped 2")) || !bytes.Contains(stderr, []byte("no record imported")) {
		t.Fatalf("import of a file with no valid line: exit %d\n%s%s", code, stdout, stderr)
	}

	// A missing input creates no data directory.
	d2 := filepath.Join(tmp, "d2")
	_, stderr, code = kadstore(t, "import", "--data", d2, filepath.Join(tmp, "missing.ndjson"))
	if code != 1 || !bytes.Contains(stderr, []byte("missing.ndjson")) {
		t.Fatalf("import of a missing file: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(d2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("import of a missing file created the data directory: %v", err)
	}

	_, stderr, code = kadstore(t, "import", "a", "b")
	if code != 2 || !bytes.Contains(stderr, []byte(`want at most one argument`)) {
		t.Fatalf("import a b: exit %d\n%s", code, stderr)
	}
	if _, stderr, code = kadstore(t, "import", "-h"); code != 0 || !bytes.Contains(stderr, []byte("-from-datastore")) {
		t.Fatalf("import -h: exit %d\n%s", code, stderr)
	}

	// A running node's directory is refused, with the reason.
	d3 := filepath.Join(tmp, "d3")
	n := startNode(t, d3)
	_, stderr, code = kadstore(t, "import", "--data", d3, bad)
	if code != 1 || !bytes.Contains(stderr, []byte("stop the node first")) {
		t.Fatalf("import into a running node's directory: exit %d\n%s", code, stderr)
	}
	n.stop(t)
}

func TestNodeRefusesANonPositiveInterval(t *testing.T) {
	_, stderr, code := kadstore(t, "node", "--data", t.TempDir(), "--expire-interval", "0")
	if code != 2 || !bytes.Contains(stderr, []byte("--expire-interval 0s: want a positive duration")) {
		t.Fatalf("node --expire-interval 0: exit %d\n%s", code, stderr)
	}
}
