//go:build unix && !linux

package dsimport

import "golang.org/x/sys/unix"

const setLockCmd = unix.F_SETLK
