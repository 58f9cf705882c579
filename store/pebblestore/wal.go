package pebblestore

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
	walrecord "github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kadstore/kadstore/record"
)

// walBlock is the block size of pebble's log format: a chunk never crosses
// a block boundary, so reading can start again at any block.
const walBlock = 32 << 10

// walDamage is what checkWAL found in a write-ahead log.
type walDamage struct {
	file       string
	stopAt     int64 // offset of the first record pebble cannot read
	size       int64
	lostWrites int64 // records written by the readable commits after it (a lower bound)
	lostBatch  int64 // commits (log records) after it
}

func (d walDamage) String() string {
	return fmt.Sprintf("write-ahead log %s damaged at offset %d of %d bytes: the replay dropped the rest, which holds at least %d records (%d commits readable after the damage; more in damaged parts)",
		d.file, d.stopAt, d.size, d.lostWrites, d.lostBatch)
}

// checkWAL reads the newest write-ahead log in dir as pebble's replay will,
// and reports damage: a record pebble cannot read followed by records it
// can, which replay drops with it (pebble reads a damaged newest log up to
// the damage, as if the rest had never been written). A log that only ends
// early (a write the process did not finish) or ends in the remains of an
// older log whose file was reused, is sound. It returns nil if there is no
// log or no damage.
func checkWAL(fs vfs.FS, dir string) (*walDamage, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var newest string
	var num uint64
	for _, n := range names {
		base, ok := strings.CutSuffix(n, ".log")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			continue
		}
		if newest == "" || v > num {
			newest, num = n, v
		}
	}
	if newest == "" {
		return nil, nil
	}
	return scanWAL(fs, fs.PathJoin(dir, newest), num, nil)
}

// scanWAL reads the log at path (log number num), see checkWAL, and calls
// lost (if not nil) with each commit after the damage.
func scanWAL(fs vfs.FS, path string, num uint64, lost func(repr []byte)) (*walDamage, error) {
	return readWAL(fs, path, num, false, lost)
}

// readWAL is scanWAL; with all, f gets the commits before the damage too
// (every commit of a sound log).
func readWAL(fs vfs.FS, path string, num uint64, all bool, each func(repr []byte)) (*walDamage, error) {
	lost := each
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return nil, nil
	}
	r := newLogReader(io.NewSectionReader(ra, 0, size), num, walrecord.NewReader)
	var stopAt int64
	for {
		stopAt = r.Offset()
		rec, err := r.Next()
		if err == nil && all && each != nil {
			var repr []byte
			if repr, err = io.ReadAll(rec); err == nil {
				each(repr)
			}
		} else if err == nil {
			_, err = io.Copy(io.Discard, rec)
		}
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			break
		}
	}
	// Look for readable records of this log after the stop, block by block.
	d := &walDamage{file: path, stopAt: stopAt, size: size}
	for b := stopAt/walBlock + 1; b*walBlock < size; {
		r := newLogReader(io.NewSectionReader(ra, b*walBlock, size-b*walBlock), num, walrecord.NewReader)
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			repr, err := io.ReadAll(rec)
			if err != nil {
				break
			}
			d.lostBatch++
			d.lostWrites += recordsIn(repr)
			if lost != nil {
				lost(repr)
			}
		}
		// Go on after the block where this reading stopped.
		b += r.Offset()/walBlock + 1
	}
	if d.lostBatch == 0 {
		return nil, nil
	}
	return d, nil
}

// damagedSuffix names the copy Open keeps of a damaged log, beside the
// store's files (pebble ignores names it does not know), so that Salvage
// can recover the writes after the damage, which the replay dropped.
const damagedSuffix = ".damaged"

// keepDamaged copies the damaged log d to <name>.damaged.
func keepDamaged(fs vfs.FS, d *walDamage) (string, error) {
	dst := d.file + damagedSuffix
	if err := vfs.Copy(fs, d.file, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// keptLogs lists the damaged logs kept in dir, with their log numbers.
func keptLogs(fs vfs.FS, dir string) (map[string]uint64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	kept := map[string]uint64{}
	for _, n := range names {
		base, ok := strings.CutSuffix(n, ".log"+damagedSuffix)
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(base, 10, 64); err == nil {
			kept[fs.PathJoin(dir, n)] = v
		}
	}
	return kept, nil
}

// lostRecords decodes the provider and value records a commit after the
// damage wrote.
func lostRecords(repr []byte) (provs []record.ProviderRecord, vals []record.ValueRecord) {
	r := batchrepr.Read(repr)
	for {
		kind, key, v, ok, err := r.Next()
		if !ok || err != nil {
			return provs, vals
		}
		if kind == pebble.InternalKeyKindSet {
			provs, vals = appendRecord(provs, vals, key, v)
		}
	}
}

// appendRecord decodes a stored key and value found outside the store's
// reads (a log, an sstable read on its own) and appends the record to provs
// or vals; keys of other kinds and values that do not decode are left.
func appendRecord(provs []record.ProviderRecord, vals []record.ValueRecord, key, v []byte) ([]record.ProviderRecord, []record.ValueRecord) {
	if len(key) == 0 {
		return provs, vals
	}
	switch key[0] {
	case tagProv:
		if _, p, ok := parseProvKey(key); ok {
			if rec, _, err := decodeProvider(nil, p, v); err == nil {
				provs = append(provs, rec)
			}
		}
	case tagValue:
		if rec, _, err := decodeValue(nil, v); err == nil {
			vals = append(vals, rec)
		}
	}
	return provs, vals
}

// recordsIn counts the provider and value records a commit (a batch's
// bytes) wrote.
func recordsIn(repr []byte) int64 {
	var n int64
	r := batchrepr.Read(repr)
	for {
		kind, key, _, ok, err := r.Next()
		if !ok || err != nil {
			return n
		}
		if kind == pebble.InternalKeyKindSet && len(key) > 0 && (key[0] == tagProv || key[0] == tagValue) {
			n++
		}
	}
}

// newLogReader calls walrecord.NewReader, whose log number type is internal to
// pebble: N is inferred from newReader.
func newLogReader[N ~uint64](r io.Reader, num uint64, newReader func(io.Reader, N) *walrecord.Reader) *walrecord.Reader {
	return newReader(r, N(num))
}
