//go:build linux

package dsimport

import "golang.org/x/sys/unix"

const setLockCmd = unix.F_OFD_SETLK
