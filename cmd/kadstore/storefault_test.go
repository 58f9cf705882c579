package main_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/internal/testkit"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// nodeRun is the outcome of a `kadstore node` expected not to start.
type nodeRun struct {
	stdout, stderr string
	code           int
	started        bool // it printed its API address: it was killed
}

// runFailingNode runs `kadstore node` on dir with args and waits for it to
// exit. If it starts instead (prints its API address) it is killed and
// started is set, so a node that should not start never hangs the test.
func runFailingNode(t *testing.T, dir string, args ...string) nodeRun {
	t.Helper()
	args = append([]string{"node", "--data", dir, "--listen", "/ip4/127.0.0.1/tcp/0",
		"--bootstrap", "none", "--mode", "server", "--api", "127.0.0.1:0", "--log-level", "debug"}, args...)
	cmd := exec.CommandContext(t.Context(), kadstoreBin, args...)
	var errOut lockedBuffer
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var r nodeRun
	var stdout strings.Builder
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		stdout.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "API on ") {
			r.started = true
			_ = cmd.Process.Kill()
			break
		}
	}
	err = cmd.Wait()
	r.stdout, r.stderr = stdout.String(), errOut.String()
	if exit, ok := err.(*exec.ExitError); ok {
		r.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// check asserts that the node did not start, exited non-zero, did not
// panic, says cause on stderr, and shows none of the secrets.
func (r nodeRun) check(t *testing.T, cause string, secrets ...string) {
	t.Helper()
	if r.started {
		t.Fatalf("the node started:\n%s\n%s", r.stdout, r.stderr)
	}
	if r.code == 0 {
		t.Errorf("exit status 0, want non-zero")
	}
	all := r.stdout + r.stderr
	for _, bad := range []string{"panic", "goroutine ", "nil pointer"} {
		if strings.Contains(all, bad) {
			t.Errorf("the output has %q:\n%s", bad, all)
		}
	}
	if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(cause)) {
		t.Errorf("stderr does not give the cause %q:\n%s", cause, r.stderr)
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("the output shows the password %q:\n%s", s, all)
		}
	}
	t.Logf("exit %d, stderr:\n%s", r.code, r.stderr)
}

// A data directory whose MANIFEST is damaged: `kadstore node` exits
// non-zero with Pebble's reason, without a panic (it panicked in Close of
// the nil store it never opened).
func TestNodeDamagedManifest(t *testing.T) {
	dir := t.TempDir()
	sdir := filepath.Join(dir, "store")
	s, err := pebblestore.Open(sdir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	rec := store.ProviderRecord{Key: []byte("key"), Provider: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/1.2.3.4/tcp/4001")}, Expires: time.Now().Add(time.Hour)}
	if err := s.AddProviders(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.DamageManifest(t, sdir)
	runFailingNode(t, dir).check(t, "manifest")
}

// A PostgreSQL store on a closed port, its DSN with a password: `kadstore
// node` exits non-zero saying the connection was refused, without a panic
// and without the password anywhere in its output.
func TestNodeUnreachablePostgres(t *testing.T) {
	for _, dsn := range []string{
		"postgres://kad:secretpw@127.0.0.1:1/db?connect_timeout=10",
		"postgres://kad@127.0.0.1:1/db?password=secretpw&connect_timeout=10",
	} {
		runFailingNode(t, t.TempDir(), "--store", dsn).check(t, "connection refused", "secretpw")
	}
}

// A PostgreSQL server that refuses the password (KADSTORE_TEST_POSTGRES, a
// postgres:// URL): the node exits non-zero saying so, without showing the
// password it tried.
func TestNodeWrongPostgresPassword(t *testing.T) {
	dsn := os.Getenv("KADSTORE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KADSTORE_TEST_POSTGRES is not set: see docs/POSTGRES.md")
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil {
		t.Skip("KADSTORE_TEST_POSTGRES is not a postgres:// URL with a user")
	}
	const wrong = "wrong-secretpw-4711"
	u.User = url.UserPassword(u.User.Username(), wrong)
	r := runFailingNode(t, t.TempDir(), "--store", u.String())
	if r.started {
		t.Skip("the server took a wrong password (trust authentication)")
	}
	r.check(t, "password authentication failed", wrong)
}
