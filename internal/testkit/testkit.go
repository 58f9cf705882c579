// Package testkit holds small helpers that tests of several packages share:
// a log buffer safe for concurrent writers, and the damage the fault tests
// do to a Pebble store's files. It is imported by tests only.
package testkit

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// SyncBuffer is an io.Writer safe for concurrent use, for capturing a log
// (or a child process's output) while it is written.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// DamageManifest flips 16 bytes at the start of every MANIFEST of the
// Pebble store in dir, where its first record is, so that the store no
// longer opens.
func DamageManifest(t testing.TB, dir string) {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if err != nil || len(ms) == 0 {
		t.Fatalf("no MANIFEST in %s: %v", dir, err)
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := 8; i < 24 && i < len(b); i++ {
			b[i] ^= 0xA5
		}
		if err := os.WriteFile(m, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
