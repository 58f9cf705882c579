package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/boxo/routing/http/client"
	"github.com/ipfs/boxo/routing/http/types"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// runningNode is a `kadstore node` process.
type runningNode struct {
	cmd    *exec.Cmd
	id     string
	addrs  []string // listen addresses, with /p2p/<id>
	api    string
	stderr *lockedBuffer
	done   chan error
}

// startNode starts `kadstore node` on dir and waits for it to print its API
// address.
func startNode(t *testing.T, dir string, extra ...string) *runningNode {
	t.Helper()
	args := append([]string{"node", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--bootstrap", "none", "--mode", "server", "--api", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	cmd := exec.Command(kadstoreBin, args...)
	n := &runningNode{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = n.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-n.done
		}
	})
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		line := lines.Text()
		if s, ok := strings.CutPrefix(line, "peer ID: "); ok {
			n.id = s
		}
		if s, ok := strings.CutPrefix(line, "listening on "); ok {
			n.addrs = append(n.addrs, s)
		}
		if s, ok := strings.CutPrefix(line, "API on "); ok {
			n.api = s
			break
		}
	}
	go func() {
		io.Copy(io.Discard, out)
		n.done <- cmd.Wait()
	}()
	if n.api == "" || n.id == "" {
		cmd.Process.Kill()
		err := <-n.done
		t.Fatalf("node did not start (%v):\n%s", err, n.stderr)
	}
	return n
}

// killer returns a function that sends n sig (SIGKILL: kills it), once
// however often it is called, and a channel closed when it has.
func (n *runningNode) killer(sig syscall.Signal) (kill func(), killed <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	return func() {
		once.Do(func() {
			n.cmd.Process.Signal(sig)
			close(ch)
		})
	}, ch
}

// stop sends SIGTERM and returns the exit status.
func (n *runningNode) stop(t *testing.T) int {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.done:
	case <-time.After(time.Minute):
		n.cmd.Process.Kill()
		t.Fatalf("node did not stop on SIGTERM:\n%s", n.stderr)
	}
	return n.cmd.ProcessState.ExitCode()
}

func httpDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func testCID(t *testing.T, s string) cid.Cid {
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func TestNodeAsAnOperatorRunsIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, dir)
	base := n.api
	c := testCID(t, "operator test content")

	// A second node on the same directory fails fast, with a message.
	start := time.Now()
	_, stderr, code := kadstore(t, "node", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", "none", "--api", "127.0.0.1:0")
	if code != 1 || !bytes.Contains(stderr, []byte("in use")) {
		t.Fatalf("second node: exit %d, stderr:\n%s", code, stderr)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("second node took %v to fail", time.Since(start))
	}

	// Admin endpoints.
	code, body := httpDo(t, "GET", base+"/v1/id", "")
	var id struct {
		ID    string   `json:"id"`
		Addrs []string `json:"addrs"`
	}
	if code != 200 || json.Unmarshal(body, &id) != nil || id.ID != n.id || len(id.Addrs) == 0 || !strings.HasSuffix(id.Addrs[0], "/p2p/"+n.id) {
		t.Fatalf("/v1/id: %d %s", code, body)
	}
	if code, body = httpDo(t, "GET", base+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	stdout, stderr, code := kadstore(t, "provide", "--api", strings.TrimPrefix(base, "http://"), c.String())
	if code != 0 || !bytes.Contains(stdout, []byte("stored, announced to 0 peers")) {
		t.Fatalf("provide: %d %s %s", code, stdout, stderr)
	}
	code, body = httpDo(t, "GET", base+"/v1/stats", "")
	var stats map[string]any
	if code != 200 || json.Unmarshal(body, &stats) != nil || stats["provider_records"] != float64(1) ||
		stats["value_records"] != float64(0) || stats["routing_table_size"] != float64(0) || stats["jobs"] == nil {
		t.Fatalf("/v1/stats: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", base+"/v1/scan?kind=providers&limit=10", "")
	if code != 200 || !bytes.Contains(body, []byte(n.id)) || !bytes.Contains(body, []byte(`"next":""`)) {
		t.Fatalf("/v1/scan: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", base+"/metrics", "")
	if code != 200 || !bytes.Contains(body, []byte("kadstore_")) {
		t.Fatalf("/metrics: %d, no kadstore metrics", code)
	}

	// Delegated Routing, through boxo's client.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.New(base, client.WithDisabledLocalFiltering(true))
	if err != nil {
		t.Fatal(err)
	}
	it, err := cl.FindProviders(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for it.Next() {
		if pr, ok := it.Val().Val.(*types.PeerRecord); ok && pr.ID.String() == n.id && len(pr.Addrs) > 0 {
			found = true
		}
	}
	it.Close()
	if !found {
		t.Fatal("delegated routing did not return the node's own provider record with addresses")
	}
	stdout, _, code = kadstore(t, "find-providers", "--api", strings.TrimPrefix(base, "http://"), c.String())
	if code != 0 || !bytes.HasPrefix(stdout, []byte(n.id)) {
		t.Fatalf("find-providers: %d %s", code, stdout)
	}
	sk, pub, _ := crypto.GenerateEd25519Key(rand.Reader)
	pid, _ := peer.IDFromPublicKey(pub)
	name := ipns.NameFromPeer(pid)
	p, _ := path.NewPath("/ipfs/" + c.String())
	rec, err := ipns.NewRecord(sk, p, 1, time.Now().Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.PutIPNS(ctx, name, rec); err != nil {
		t.Fatalf("PutIPNS: %v", err)
	}
	back, err := cl.GetIPNS(ctx, name)
	if err != nil {
		t.Fatalf("GetIPNS: %v", err)
	}
	if v, _ := back.Value(); v.String() != p.String() {
		t.Fatalf("IPNS value %v", v)
	}
	self, _ := peer.Decode(n.id)
	pit, err := cl.FindPeers(ctx, self)
	if err != nil {
		t.Fatalf("FindPeers(self): %v", err)
	}
	pit.Close()

	// Bad requests get a 4xx with a message.
	for _, bad := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/routing/v1/providers/not-a-cid", "", 400},
		{"GET", "/v1/scan?after=!!!", "", 400},
		{"GET", "/v1/scan?after=AAAAAAAA", "", 400},
		{"POST", "/v1/provide", `{"keys":["bafy-nonsense"]}`, 400},
		{"POST", "/v1/provide", `{"keys":["` + strings.Repeat("x", 2<<20) + `"]}`, 413},
	} {
		code, body := httpDo(t, bad.method, base+bad.path, bad.body)
		if code != bad.want || len(body) == 0 {
			t.Errorf("%s %s: %d %q, want %d with a message", bad.method, bad.path, code, body, bad.want)
		}
	}

	// SIGTERM: exit 0; the restarted node has the same peer ID and records.
	if code := n.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM:\n%s", code, n.stderr)
	}
	stdout, stderr, code = kadstore(t, "get", c.String(), "--data", dir)
	if code != 0 || !bytes.Contains(stdout, []byte(n.id)) || !bytes.Contains(stdout, []byte("/ip4/127.0.0.1/tcp/")) {
		t.Fatalf("get from the stopped node's directory: %d %s %s", code, stdout, stderr)
	}
	n2 := startNode(t, dir)
	if n2.id != n.id {
		t.Fatalf("peer ID changed: %s -> %s", n.id, n2.id)
	}
	stdout, _, code = kadstore(t, "get", c.String(), "--api", strings.TrimPrefix(n2.api, "http://"))
	if code != 0 || !bytes.Contains(stdout, []byte(n.id)) {
		t.Fatalf("get through the restarted node: %d %s", code, stdout)
	}
	stdout, _, code = kadstore(t, "stats", "--api", strings.TrimPrefix(n2.api, "http://"))
	if code != 0 || !bytes.Contains(stdout, []byte(`"provider_records": 1`)) || !bytes.Contains(stdout, []byte(`"value_records": 1`)) {
		t.Fatalf("stats after restart: %d %s", code, stdout)
	}
	if code := n2.stop(t); code != 0 {
		t.Fatalf("second exit status %d", code)
	}
}

func TestExportImportRoundTripsAFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	n := startNode(t, src)
	var keys []string
	for i := range 5 {
		keys = append(keys, testCID(t, "export "+string(rune('a'+i))).String())
	}
	if _, stderr, code := kadstore(t, append([]string{"provide", "--api", strings.TrimPrefix(n.api, "http://")}, keys...)...); code != 0 {
		t.Fatalf("provide: %s", stderr)
	}
	n.stop(t)

	first := filepath.Join(t.TempDir(), "first.ndjson")
	if _, stderr, code := kadstore(t, "export", "--data", src, "-o", first); code != 0 {
		t.Fatalf("export: %s", stderr)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	stdout, stderr, code := kadstore(t, "import", "--data", dst, first)
	if code != 0 || !bytes.Contains(stdout, []byte("imported 5 records, skipped 0")) {
		t.Fatalf("import: %d %s %s", code, stdout, stderr)
	}
	second := filepath.Join(t.TempDir(), "second.ndjson")
	if _, stderr, code := kadstore(t, "export", "--data", dst, "-o", second); code != 0 {
		t.Fatalf("export: %s", stderr)
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("import then export changed the file:\n%s\nvs\n%s", a, b)
	}
	if bytes.Contains(a, []byte("\x1b[")) {
		t.Fatal("progress bar escapes in a non-terminal output")
	}

	// ls pages through the records with cursors.
	stdout, stderr, code = kadstore(t, "ls", "providers", "--data", dst, "--limit", "2")
	if code != 0 || bytes.Count(stdout, []byte("\n")) != 2 || !bytes.Contains(stderr, []byte("--after ")) {
		t.Fatalf("ls: %d %s %s", code, stdout, stderr)
	}
	cursor := strings.TrimSpace(strings.SplitN(string(stderr), "--after ", 2)[1])
	stdout, _, code = kadstore(t, "ls", "providers", "--data", dst, "--limit", "10", "--after", cursor)
	if code != 0 || bytes.Count(stdout, []byte("\n")) != 3 {
		t.Fatalf("ls second page: %d %s", code, stdout)
	}
	// A bad line is skipped and reported.
	bad := filepath.Join(t.TempDir(), "bad.ndjson")
	os.WriteFile(bad, append(a, []byte("{garbage\n")...), 0o600)
	stdout, _, code = kadstore(t, "import", "--data", filepath.Join(t.TempDir(), "d3"), bad)
	if code != 0 || !bytes.Contains(stdout, []byte("imported 5 records, skipped 1")) || !bytes.Contains(stdout, []byte("line 6")) {
		t.Fatalf("import with a bad line: %d %s", code, stdout)
	}
}
