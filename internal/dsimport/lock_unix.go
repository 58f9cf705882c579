//go:build unix

package dsimport

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sharedLock takes a shared (read) lock on the whole of the existing file
// name, without creating, truncating or writing it. It fails with
// errLockConflict while a process holds the exclusive lock pebble takes on a
// store it has open, and that process cannot take it again until the
// returned Closer releases ours.
//
// On Linux it is an open file description lock, which also conflicts with a
// lock held by this same process (a classic fcntl lock would silently
// replace it, and be dropped when any descriptor of the file closes);
// elsewhere it is a classic fcntl lock, as pebble's own.
func sharedLock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), setLockCmd, &lk); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, errLockConflict
		}
		return nil, &os.PathError{Op: "lock", Path: name, Err: err}
	}
	return f, nil
}

// isLockConflict reports whether err is goleveldb's failure to flock a LOCK
// file that another process holds.
func isLockConflict(err error) bool {
	return errors.Is(err, unix.EWOULDBLOCK) || errors.Is(err, unix.EAGAIN)
}
