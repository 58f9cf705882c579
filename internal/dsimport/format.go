package dsimport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Format is the storage engine of a datastore directory.
type Format uint8

// The formats Import reads.
const (
	// LevelDB is github.com/syndtr/goleveldb as go-ds-leveldb writes it,
	// Kubo's default.
	LevelDB Format = iota + 1
	// Pebble is github.com/cockroachdb/pebble as go-ds-pebble writes it,
	// Kubo's pebbleds profile.
	Pebble
)

func (f Format) String() string {
	switch f {
	case LevelDB:
		return "leveldb"
	case Pebble:
		return "pebble"
	default:
		return fmt.Sprintf("format(%d)", uint8(f))
	}
}

// kuboDirs are the store directories of a Kubo repository, by profile: the
// default (flatfs for blocks, LevelDB for the rest), pebbleds, badgerds.
var kuboDirs = []string{"datastore", "pebbleds", "badgerds"}

// Detect returns the store directory of dir and its format. dir is either
// the store itself or a Kubo repository whose datastore/ (LevelDB) or
// pebbleds/ (Pebble) directory holds it. It only reads directory listings.
func Detect(dir string) (string, Format, error) {
	f, err := detectDir(dir)
	if !errors.Is(err, ErrUnknownFormat) {
		return dir, f, err
	}
	var found []string
	var sub Format
	var subErr error
	for _, name := range kuboDirs {
		p := filepath.Join(dir, name)
		if fi, statErr := os.Stat(p); statErr != nil || !fi.IsDir() {
			continue
		}
		sf, serr := detectDir(p)
		if errors.Is(serr, ErrUnknownFormat) {
			continue
		}
		found = append(found, p)
		sub, subErr = sf, serr
	}
	switch len(found) {
	case 0:
		return dir, 0, err
	case 1:
		return found[0], sub, subErr
	default:
		return dir, 0, fmt.Errorf("%w: %s holds several stores (%s): give one of them", ErrUnknownFormat, dir, strings.Join(found, ", "))
	}
}

// detectDir recognises a store by its files: Pebble writes OPTIONS-* and
// (since format 2) marker.* files; LevelDB writes CURRENT and MANIFEST-*
// but no OPTIONS-* (a Pebble store of format 1 has CURRENT too, so Pebble is
// checked first); Badger writes KEYREGISTRY and *.vlog.
func detectDir(dir string) (Format, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("dsimport: %w", err)
	}
	var current, manifest, pebble, badger bool
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "CURRENT":
			current = true
		case strings.HasPrefix(name, "MANIFEST-"):
			manifest = true
		case strings.HasPrefix(name, "OPTIONS-"), strings.HasPrefix(name, "marker."):
			pebble = true
		case name == "KEYREGISTRY", strings.HasSuffix(name, ".vlog"):
			badger = true
		}
	}
	switch {
	case pebble:
		return Pebble, nil
	case current && manifest:
		return LevelDB, nil
	case badger:
		return 0, fmt.Errorf("%w: %s is a Badger datastore; only LevelDB and Pebble are read", ErrUnsupportedFormat, dir)
	default:
		return 0, fmt.Errorf("%w: %s", ErrUnknownFormat, dir)
	}
}
