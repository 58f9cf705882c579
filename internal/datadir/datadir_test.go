package datadir_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/kadstore/kadstore/internal/datadir"
	"github.com/kadstore/kadstore/store/pebblestore"
)

func TestLockIsExclusiveAndReleased(t *testing.T) {
	d := datadir.New(filepath.Join(t.TempDir(), "data"))
	l, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// A second Lock fails at once, in this process too.
	if _, err := d.Lock(); !errors.Is(err, datadir.ErrLocked) {
		t.Fatalf("second Lock: %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := d.Lock()
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	l2.Unlock()
}

func TestLockOrAPI(t *testing.T) {
	d := datadir.New(t.TempDir())
	// A file a killed node left is ignored: nobody holds the lock.
	if err := os.WriteFile(d.APIPath(), []byte("http://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, u, err := d.LockOrAPI()
	if err != nil || l == nil || u != "" {
		t.Fatalf("LockOrAPI of a free directory: %v %q %v", l, u, err)
	}
	if err := l.WithdrawAPI(); err != nil {
		t.Fatal(err)
	}

	// Held, with no address yet: ErrNoAPI.
	if _, _, err := d.LockOrAPI(); !errors.Is(err, datadir.ErrNoAPI) || !errors.Is(err, datadir.ErrLocked) {
		t.Fatalf("LockOrAPI of a held directory with no address: %v", err)
	}
	// Held, with an address: the address, loopback for an unspecified one.
	if err := l.PublishAPI(&net.TCPAddr{IP: net.IPv4zero, Port: 5080}); err != nil {
		t.Fatal(err)
	}
	l2, u, err := d.LockOrAPI()
	if err != nil || l2 != nil || u != "http://127.0.0.1:5080" {
		t.Fatalf("LockOrAPI of a running node: %v %q %v", l2, u, err)
	}
	if err := l.PublishAPI(&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}); err != nil {
		t.Fatal(err)
	}
	if _, u, _ := d.LockOrAPI(); u != "http://[::1]:80" {
		t.Fatalf("IPv6: %q", u)
	}
	if err := l.WithdrawAPI(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.APIPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("api file after WithdrawAPI: %v", err)
	}
	l.Unlock()
}

func TestOpenStore(t *testing.T) {
	d := datadir.New(filepath.Join(t.TempDir(), "data"))
	l, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	// Reading a directory with no store creates nothing.
	if _, err := l.OpenStore(pebblestore.Options{ReadOnly: true}); !errors.Is(err, datadir.ErrNoStore) {
		t.Fatalf("read-only OpenStore with no store: %v", err)
	}
	if _, err := os.Stat(d.IdentityPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("identity created by a read: %v", err)
	}
	s, err := l.OpenStore(pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, self, created, err := d.Identity()
	if err != nil || created {
		t.Fatalf("identity after OpenStore for writing: created %v, %v", created, err)
	}
	opts := datadir.StoreOptions(self, pebblestore.Options{})
	if len(opts.IndexedPeers) != 1 || opts.IndexedPeers[0] != self {
		t.Fatalf("StoreOptions: IndexedPeers %v, want [%s]", opts.IndexedPeers, self)
	}
}
