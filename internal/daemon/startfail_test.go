package daemon_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kadstore/kadstore/internal/daemon"
	"github.com/kadstore/kadstore/internal/testkit"
	"github.com/kadstore/kadstore/store"
)

type syncBuffer = testkit.SyncBuffer

// startFails starts a daemon that must fail to open its store, and returns
// the error and the log. A panic (the nil *pebblestore.Store that Close
// called) fails the test.
func startFails(t *testing.T, cfg daemon.Config) (error, string) {
	t.Helper()
	var log syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := func() (d *daemon.Daemon, err error) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Start panicked: %v", r)
			}
		}()
		return daemon.Start(context.Background(), cfg)
	}()
	if err == nil {
		d.Close()
		t.Fatal("Start succeeded")
	}
	if d != nil {
		t.Errorf("Start returned a daemon with its error %v", err)
	}
	// The data directory's lock was released: the directory opens again.
	cfg.Store = "memory"
	cfg.Logger = slog.New(slog.DiscardHandler)
	d, err2 := daemon.Start(context.Background(), cfg)
	if err2 != nil {
		t.Fatalf("the directory does not open again after the failed start: %v", err2)
	}
	d.Close()
	return err, log.String()
}

// An unreachable PostgreSQL server: Start fails with an error matching
// store.ErrUnavailable that says why, and its password appears nowhere.
func TestStartUnreachablePostgres(t *testing.T) {
	cfg := config(t.TempDir())
	cfg.Store = "postgres://kad:secretpw@127.0.0.1:1/db?connect_timeout=5"
	err, log := startFails(t, cfg)
	t.Log(err)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("error %v, want store.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "kad:xxxxx@127.0.0.1:1") {
		t.Errorf("error does not say why, naming the server: %v", err)
	}
	if strings.Contains(err.Error()+log, "secretpw") {
		t.Errorf("the password is shown:\nerror: %v\nlog:\n%s", err, log)
	}
}

// A key=value DSN is not a store the daemon takes: the error says so
// without the password.
func TestStartKeyValueDSNRedacted(t *testing.T) {
	cfg := config(t.TempDir())
	cfg.Store = "host=127.0.0.1 port=1 user=kad password=secretpw dbname=db"
	err, _ := startFails(t, cfg)
	if !errors.Is(err, daemon.ErrConfig) || strings.Contains(err.Error(), "secretpw") {
		t.Errorf("error %v, want ErrConfig without the password", err)
	}
}

// A damaged MANIFEST: Start fails with Pebble's reason, no panic.
func TestStartDamagedManifest(t *testing.T) {
	dir := t.TempDir()
	d, err := daemon.Start(context.Background(), config(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.DamageManifest(t, filepath.Join(dir, "store"))
	err, _ = startFails(t, config(dir))
	t.Log(err)
	if !strings.Contains(strings.ToLower(err.Error()), "manifest") {
		t.Errorf("error %v does not name the MANIFEST", err)
	}
}
