//go:build cgo && linux

package main

/*
#include <malloc.h>
#include <stdlib.h>

// kadstore_arena_cap is 1 when the cap below is in force: set by
// MALLOC_ARENA_MAX in the environment, or by mallopt here.
static int kadstore_arena_cap;

// Runs when the process is loaded, before any Go code and before any thread
// is started: glibc fixes its arena limit the first time a thread needs an
// arena of its own, so mallopt must come before that.
__attribute__((constructor)) static void kadstore_limit_arenas(void) {
	if (getenv("MALLOC_ARENA_MAX") != NULL) {
		kadstore_arena_cap = 1;
		return;
	}
#ifdef M_ARENA_MAX
	kadstore_arena_cap = mallopt(M_ARENA_MAX, 2) == 1;
#endif
}

static int kadstore_arena_capped(void) { return kadstore_arena_cap; }
*/
import "C"

// mallocArenasCapped reports whether glibc malloc is limited to two arenas in
// this process.
//
// Why: Pebble allocates its block cache and memtables with C malloc (when
// built with cgo). glibc gives each thread that contends for malloc an arena
// of its own, up to 8 per core, and the block cache frees and allocates blocks
// of many sizes from all of them, so freed memory stays scattered over the
// arenas instead of being reused and RSS grows well past the configured cache
// (docs/BENCHMARKS.md, "Peak RSS and glibc malloc arenas").
func mallocArenasCapped() bool { return C.kadstore_arena_capped() == 1 }
