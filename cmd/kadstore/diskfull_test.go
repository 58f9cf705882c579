//go:build linux

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// freeBytes is the free space of the filesystem holding dir, as an
// unprivileged process may use it.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// provideStatus posts keys to /v1/provide and returns the status, the keys
// acknowledged and the answer's text.
func provideStatus(t *testing.T, apiURL string, keys []string) (int, []string, string) {
	t.Helper()
	body, _ := json.Marshal(api.ProvideRequest{Keys: keys})
	resp, err := http.Post(apiURL+"/v1/provide", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	var pr api.ProvideResponse
	json.Unmarshal(raw.Bytes(), &pr)
	var ok []string
	for _, r := range pr.Results {
		if r.Error == "" {
			ok = append(ok, r.Key)
		}
	}
	return resp.StatusCode, ok, raw.String()
}

// A node whose disk fills refuses new records with 507 and a reason, keeps
// serving reads and every record it acknowledged, says so in /healthz, and
// takes writes again by itself once space is freed. The disk is a private
// tmpfs where the test may mount one (root), otherwise the temporary
// directory's filesystem; either way a filler file takes space and the
// node's --min-free-space is set so that only a few MiB are left to it.
func TestNodeDiskFull(t *testing.T) {
	root := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", root).Run(); err == nil {
		t.Cleanup(func() { exec.Command("umount", "-l", root).Run() })
	} else {
		t.Logf("no tmpfs (%v): using the temporary directory's filesystem", err)
	}
	dir := filepath.Join(root, "data")
	filler := filepath.Join(root, "filler")
	if err := os.WriteFile(filler, make([]byte, 48<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// Leave the node about 6 MiB above its reserve.
	reserveMiB := (freeBytes(t, root) - 6<<20) >> 20
	n := startNode(t, dir, "--min-free-space", fmt.Sprint(reserveMiB))

	var acked []string
	refused := ""
	for i := 0; i < 5000 && refused == ""; i++ {
		keys := make([]string, 100)
		for j := range keys {
			keys[j] = testCID(t, fmt.Sprintf("diskfull-%d-%d", i, j)).String()
		}
		code, ok, text := provideStatus(t, n.api, keys)
		acked = append(acked, ok...)
		switch {
		case code == http.StatusInsufficientStorage:
			refused = text
		case code != http.StatusOK:
			t.Fatalf("provide: status %d: %s", code, text)
		}
	}
	if refused == "" || !strings.Contains(refused, "not enough free disk space") {
		t.Fatalf("no 507 with a reason after %d keys acknowledged: %q", len(acked), refused)
	}
	if len(acked) == 0 {
		t.Fatal("no key acknowledged before the disk filled")
	}
	code, body := httpDo(t, "GET", n.api+"/healthz", "")
	if code != 200 || !strings.Contains(string(body), "degraded") || !strings.Contains(string(body), "writes refused") {
		t.Fatalf("healthz while full: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", n.api+"/routing/v1/providers/"+acked[0], ""); code != 200 {
		t.Fatalf("read while full: %d %s", code, body)
	}

	// Free the space: writes are taken again without a restart (the node
	// reads the free space again at most every 100 ms while it refuses).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var after []string
	i := 0
	p2ptest.WaitUntil(t, time.Minute, "writes taken again after the space was freed", func() bool {
		i++
		code, ok, text := provideStatus(t, n.api, []string{testCID(t, fmt.Sprintf("freed-%d", i)).String()})
		if code != http.StatusOK && code != http.StatusInsufficientStorage {
			t.Fatalf("provide after freeing: %d %s", code, text)
		}
		after = append(after, ok...)
		return len(after) > 0
	})
	if code, body := httpDo(t, "GET", n.api+"/healthz", ""); code != 200 || strings.Contains(string(body), "degraded") {
		t.Fatalf("healthz after freeing: %d %s", code, body)
	}
	if code := n.stop(t); code != 0 {
		t.Fatalf("stop: exit %d:\n%s", code, n.stderr)
	}
	if strings.Contains(n.stderr.String(), "panic") {
		t.Fatalf("the node's log has a panic:\n%s", n.stderr)
	}

	s, err := pebblestore.Open(filepath.Join(dir, "store"), pebblestore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	self, err := peer.Decode(n.id)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(acked, after...) {
		provs, err := s.Providers(context.Background(), mustCID(t, k).Hash(), 0)
		if err != nil || len(provs) != 1 || provs[0].Provider != self {
			t.Fatalf("acknowledged key %s: %v %v", k, provs, err)
		}
	}
	t.Logf("%d keys acknowledged before the disk filled, %d after it was freed", len(acked), len(after))
}
