//go:build windows

package datadir

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// errWouldBlock is lockFile's error while another holder has the lock.
var errWouldBlock = errors.New("datadir: lock held")

// lockFile takes an exclusive lock on the first byte of f without waiting.
// Windows locks are mandatory: other processes cannot read the holder's pid
// from the file, and report it as unknown.
func lockFile(f *os.File) error {
	ol := new(windows.Overlapped)
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return errWouldBlock
	}
	return err
}
