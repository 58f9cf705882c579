package dsimport

import "errors"

// errLockConflict is returned by sharedLock when another holder has the file
// locked for writing.
var errLockConflict = errors.New("dsimport: lock held by another process")
