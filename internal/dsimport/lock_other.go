//go:build !unix

package dsimport

import (
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// sharedLock falls back to pebble's own lock where there are no fcntl locks:
// it is exclusive, and it may create the LOCK file.
func sharedLock(name string) (io.Closer, error) { return vfs.Default.Lock(name) }

// isLockConflict cannot tell a lock conflict apart here.
func isLockConflict(error) bool { return false }
