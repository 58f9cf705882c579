// Package datadir owns a kadstore data directory: where each file lives, the
// lock that gives one process the directory at a time, the node's identity,
// the options the Pebble store is opened with, the job state, and the address
// of the HTTP API of the node that runs on it.
//
// A data directory holds
//
//	kadstore.lock   the lock (and the pid of its holder)
//	identity.key    the node's private key (internal/identity)
//	store/          the Pebble store (store/pebblestore)
//	jobs.json       the background jobs' progress (kad/jobs.FileState)
//	api             the running node's API URL, as Kubo keeps $IPFS_PATH/api
//
// The node (internal/daemon) and every tool of the kadstore command go
// through this package, so they agree on the layout. A process that opens the
// store holds the lock for as long as it has it open; the node publishes its
// API address once it serves, and removes it when it stops cleanly. A tool
// that finds the lock held reads that address and asks the node instead
// (see Dir.RunningAPI): the lock, not the api file, says whether a node runs,
// so a file left by a killed node is never trusted.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/identity"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// Default is the data directory of the node and of the tools when none is
// given.
const Default = "./kadstore-data"

// Names of the files inside a data directory.
const (
	LockFile     = "kadstore.lock"
	IdentityFile = identity.FileName
	StoreDir     = "store"
	JobStateFile = "jobs.json"
	APIFile      = "api"
)

// Errors.
var (
	// ErrLocked is returned by Lock while another process (or another Lock
	// of this process) holds the directory.
	ErrLocked = errors.New("datadir: data directory in use")
	// ErrNoStore is returned by OpenStore for reading when the directory has
	// no store.
	ErrNoStore = errors.New("datadir: no store in the data directory")
	// ErrNoAPI is returned by RunningAPI when the process holding the
	// directory publishes no API address (its API is off, or it is not a
	// node, or it is still starting).
	ErrNoAPI = errors.New("datadir: the process holding the data directory publishes no API address")
)

// Dir is a data directory. The zero value is Default.
type Dir struct {
	path string
}

// New returns the data directory at path ("" for Default). It touches
// nothing on disk.
func New(path string) Dir {
	if path == "" {
		path = Default
	}
	return Dir{path: path}
}

// Path is the directory's path.
func (d Dir) Path() string {
	if d.path == "" {
		return Default
	}
	return d.path
}

func (d Dir) String() string { return d.Path() }

// LockPath, IdentityPath, StorePath, JobStatePath and APIPath are the paths
// of the directory's files.
func (d Dir) LockPath() string     { return filepath.Join(d.Path(), LockFile) }
func (d Dir) IdentityPath() string { return filepath.Join(d.Path(), IdentityFile) }
func (d Dir) StorePath() string    { return filepath.Join(d.Path(), StoreDir) }
func (d Dir) JobStatePath() string { return filepath.Join(d.Path(), JobStateFile) }
func (d Dir) APIPath() string      { return filepath.Join(d.Path(), APIFile) }

// Lock is the exclusive hold of a data directory by this process.
type Lock struct {
	dir Dir
	f   *os.File
}

// Lock creates the directory if needed and takes its lock, without waiting:
// while another process holds it, Lock fails with ErrLocked and a message
// naming the holder's pid where the platform lets it be read. The lock is
// released by Unlock, or by the system when the process ends, however it
// ends.
func (d Dir) Lock() (*Lock, error) {
	if err := os.MkdirAll(d.Path(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(d.LockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if !errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("datadir: locking %s: %w", d.LockPath(), err)
		}
		return nil, fmt.Errorf("%w: %s is used by another kadstore process (pid %s)", ErrLocked, d.Path(), d.holder())
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{dir: d, f: f}, nil
}

// holder is the pid the lock file names, or "unknown".
func (d Dir) holder() string {
	b, _ := os.ReadFile(d.LockPath())
	if s := strings.TrimSpace(string(b)); s != "" {
		return s
	}
	return "unknown"
}

// Dir is the locked directory.
func (l *Lock) Dir() Dir { return l.dir }

// Unlock releases the lock. It is safe on a nil *Lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// PublishAPI records addr, the address the node's HTTP API listens on, in
// the directory's api file, for the tools to find. An unspecified listen
// address (0.0.0.0, ::) is published as the loopback address of its family.
// The file is replaced atomically.
func (l *Lock) PublishAPI(addr net.Addr) error {
	u, err := apiURL(addr)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(l.dir.Path(), ".api-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(u + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), l.dir.APIPath())
}

// WithdrawAPI removes the api file: the node stops serving.
func (l *Lock) WithdrawAPI() error {
	err := os.Remove(l.dir.APIPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func apiURL(addr net.Addr) (string, error) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("datadir: API address %v is not TCP", addr)
	}
	ip := tcp.IP
	switch {
	case ip == nil || ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port)), nil
}

// LockOrAPI takes the directory's lock or, when a node holds the directory,
// returns the URL of its API instead: exactly one of lock and url is set on
// success. The lock, not the api file, tells whether a process holds the
// directory, so an api file a killed node left behind is ignored. When the
// holder publishes no address, the error wraps ErrNoAPI and ErrLocked.
func (d Dir) LockOrAPI() (lock *Lock, url string, err error) {
	l, err := d.Lock()
	if err == nil {
		return l, "", nil
	}
	if !errors.Is(err, ErrLocked) {
		return nil, "", err
	}
	u, rerr := d.readAPI()
	if rerr != nil {
		return nil, "", fmt.Errorf("%w (%w): %s is used by a process (pid %s) with no API address in %s: is the node's API off, or is it still starting?",
			ErrNoAPI, ErrLocked, d.Path(), d.holder(), d.APIPath())
	}
	return nil, u, nil
}

func (d Dir) readAPI() (string, error) {
	b, err := os.ReadFile(d.APIPath())
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("datadir: %s does not hold an API URL: %q", d.APIPath(), s)
	}
	return s, nil
}

// Identity returns the node's private key and peer ID, creating the key on
// first use; created reports that it did.
func (d Dir) Identity() (key crypto.PrivKey, self peer.ID, created bool, err error) {
	key, created, err = identity.LoadOrCreate(d.IdentityPath())
	if err != nil {
		return nil, "", false, err
	}
	self, err = peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, "", false, fmt.Errorf("datadir: identity: %w", err)
	}
	return key, self, created, nil
}

// StoreOptions returns opts with what the directory decides set: the node
// indexes its own provider records by peer (pebblestore.Options.IndexedPeers
// holds self), so every process opening the store for writing must open it
// with the same index, or Open would drop the index and the node rebuild it.
func StoreOptions(self peer.ID, opts pebblestore.Options) pebblestore.Options {
	if !slices.Contains(opts.IndexedPeers, self) {
		opts.IndexedPeers = append(append([]peer.ID(nil), opts.IndexedPeers...), self)
	}
	return opts
}

// OpenStore opens the directory's Pebble store, which the caller must hold
// the lock of (l). For writing it loads (or creates) the identity and opens
// the store as the node does (StoreOptions); for reading (opts.ReadOnly) it
// creates nothing and fails with ErrNoStore if there is no store.
func (l *Lock) OpenStore(opts pebblestore.Options) (*pebblestore.Store, error) {
	d := l.dir
	if opts.ReadOnly {
		if _, err := os.Stat(d.StorePath()); err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrNoStore, d.Path(), err)
		}
	} else {
		_, self, _, err := d.Identity()
		if err != nil {
			return nil, err
		}
		opts = StoreOptions(self, opts)
	}
	return pebblestore.Open(d.StorePath(), opts)
}
