// Package identity keeps a node's libp2p identity in a key file, so that its
// peer ID never changes across restarts.
//
// The file holds the private key in libp2p's protobuf encoding
// (crypto.MarshalPrivateKey), is created with mode 0600 on first use, and is
// refused if it is readable by others (on Unix) or does not decode.
package identity

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// ErrBadKeyFile is returned for a key file that is unreadable, corrupt, or
// open to other users.
var ErrBadKeyFile = errors.New("identity: bad key file")

// FileName is the key file's name inside a data directory.
const FileName = "identity.key"

// LoadOrCreate returns the private key stored at path, creating a new Ed25519
// key there first if the file does not exist. created reports which happened.
func LoadOrCreate(path string) (key crypto.PrivKey, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return nil, false, err
		}
		// Windows has no mode bits for others (Go reports 0666 for every
		// writable file); its ACLs are left to the operator.
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("%w: %s has mode %v, want 0600", ErrBadKeyFile, path, fi.Mode().Perm())
		}
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s: %v", ErrBadKeyFile, path, err)
		}
		return k, false, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, false, fmt.Errorf("%w: %v", ErrBadKeyFile, err)
	}

	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	// Write to a temporary file and rename, so a crash never leaves a
	// half-written key that would change the node's identity.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Close(); err != nil {
		return nil, false, err
	}
	// Link rather than rename: if two processes race to create the key, only
	// one wins and the other loads the winner's key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, _, err := LoadOrCreate(path)
			return k, false, err
		}
		return nil, false, err
	}
	return k, true, nil
}
