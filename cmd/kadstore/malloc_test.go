//go:build cgo && linux

package main

import "testing"

// The constructor in malloc_glibc.go runs for the test binary too: on glibc
// the cap must be in force before any Go code runs.
func TestMallocArenasCapped(t *testing.T) {
	if !mallocArenasCapped() {
		t.Fatal("glibc malloc arenas are not capped: mallopt(M_ARENA_MAX, 2) did not take effect")
	}
}
