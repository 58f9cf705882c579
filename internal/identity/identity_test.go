package identity_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/identity"
)

func TestLoadOrCreateKeepsPeerID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", identity.FileName)
	k1, created, err := identity.LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("create: %v created=%v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, err %v", fi.Mode().Perm(), err)
	}
	k2, created, err := identity.LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("load: %v created=%v", err, created)
	}
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	if id1 != id2 {
		t.Fatalf("peer ID changed: %s -> %s", id1, id2)
	}
}

func TestLoadOrCreateRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.key")
	if err := os.WriteFile(corrupt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := identity.LoadOrCreate(corrupt); !errors.Is(err, identity.ErrBadKeyFile) {
		t.Fatalf("corrupt file: %v", err)
	}
	open := filepath.Join(dir, "open.key")
	if _, _, err := identity.LoadOrCreate(open); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := identity.LoadOrCreate(open); !errors.Is(err, identity.ErrBadKeyFile) {
		t.Fatalf("world-readable file: %v", err)
	}
}
