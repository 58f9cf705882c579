//go:build !cgo || !linux

package main

// mallocArenasCapped reports false: without cgo Pebble's memory is Go heap,
// and other systems' allocators are not glibc's (see malloc_glibc.go).
func mallocArenasCapped() bool { return false }
