package pebblestore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// CheckReport is what Check found in a store.
type CheckReport struct {
	// Tables is the number of sstables whose blocks were verified.
	Tables int
	// ProviderRecords and ValueRecords are the records read, expired ones
	// included, damaged ones not.
	ProviderRecords, ValueRecords int64
	// Problems describes each fault found, one a line; empty for a sound
	// store.
	Problems []string
}

// OK reports whether the store is sound.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

func (r *CheckReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// maxListed is how many faults of one kind a report lists one by one.
const maxListed = 20

// Check verifies the store in dir without changing it, as `kadstore check`
// does: the checksum of every block of every sstable, the newest
// write-ahead log (damage that replay would stop at), that the database
// opens (MANIFEST, OPTIONS, older logs), the checksum of every record, and
// the indexes against the records: a time-index entry for every record, the
// peer index both ways, and the record counts. It returns an error only if
// it could not check (the directory is missing, or a node holds it); faults
// are in the report. opts.ReadOnly is implied.
func Check(ctx context.Context, dir string, opts Options) (*CheckReport, error) {
	opts.EnsureDefaults()
	opts.ReadOnly = true
	rep := &CheckReport{}
	names, err := opts.FS.List(dir)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	slices.Sort(names)
	ro := opts.pebbleOptions(nil, newFaults(opts.Logger)).MakeReaderOptions()
	for _, name := range names {
		if !strings.HasSuffix(name, ".sst") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Tables++
		if err := checkTable(ctx, opts, opts.FS.PathJoin(dir, name), ro); err != nil {
			rep.problem("sstable %s: %s", name, firstLine(err))
		}
	}
	if d, err := checkWAL(opts.FS, dir); err != nil {
		rep.problem("write-ahead log: %v", err)
	} else if d != nil {
		rep.problem("%s", d)
	}
	kept, err := keptLogs(opts.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	for path, num := range kept {
		if d, err := scanWAL(opts.FS, path, num, nil); err == nil && d != nil {
			rep.problem("%s, kept when the store was opened: the replay dropped %d records written after the damage; --repair recovers them", path, d.lostWrites)
		}
	}
	s, err := Open(dir, opts)
	switch {
	case errors.Is(err, ErrLocked):
		return nil, err
	case err != nil:
		rep.problem("the store does not open: %v", err)
		return rep, nil
	}
	defer s.Close()
	c := &checker{s: s, rep: rep, perProvider: map[string]int64{}}
	if err := c.records(ctx); err != nil {
		return nil, err
	}
	if err := c.indexes(ctx); err != nil {
		return nil, err
	}
	return rep, nil
}

// checkTable verifies the checksum of every block of one sstable.
func checkTable(ctx context.Context, opts Options, path string, ro sstable.ReaderOptions) error {
	r, err := openTable(ctx, opts, path, ro)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.ValidateBlockChecksums()
}

// openTable opens one sstable on its own, outside pebble's table cache.
func openTable(ctx context.Context, opts Options, path string, ro sstable.ReaderOptions) (*sstable.Reader, error) {
	f, err := opts.FS.Open(path)
	if err != nil {
		return nil, err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err := sstable.NewReader(ctx, readable, ro)
	if err != nil {
		readable.Close()
		return nil, err
	}
	return r, nil
}

// checker walks a store's keys for Check.
type checker struct {
	s   *Store
	rep *CheckReport
	// due holds e|expiry|kind|kadkey[:4] of every record, the time-index
	// entry it needs.
	due [][expiryHead + 4]byte
	// perProvider counts the records of each provider.
	perProvider map[string]int64
	badRecords  int
	unindexed   int
}

// walk calls f for every key and value in [lower, upper), stepping over
// damaged ranges (each reported once).
func (c *checker) walk(ctx context.Context, what string, lower, upper []byte, f func(k, v []byte)) error {
	it, err := c.s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	var last []byte
	n := 0
	valid := it.First()
	for {
		var err error
		if valid {
			if n++; n%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var v []byte
			if v, err = it.ValueAndErr(); err == nil {
				last = append(last[:0], it.Key()...)
				f(it.Key(), v)
				valid = it.Next()
				continue
			}
		} else if err = it.Error(); err == nil {
			return nil
		}
		if !pebble.IsCorruptionError(err) {
			return err
		}
		c.rep.problem("%s: unreadable after key %x: %s", what, last, firstLine(err))
		from := lower
		if last != nil {
			from = last
		}
		if valid = skipDamage(it, from, upper); !valid {
			return nil
		}
	}
}

// records walks the provider and value records.
func (c *checker) records(ctx context.Context) error {
	s := c.s
	err := c.walk(ctx, "provider records", []byte{tagProv}, tagEnd(tagProv), func(key, v []byte) {
		k, p, ok := parseProvKey(key)
		if !ok {
			c.bad("provider record key %x is malformed", key)
			return
		}
		ms, ok := verifyProvider(p, v)
		if !ok {
			c.bad("provider record %s of %s fails its checksum", k.String(), peer.ID(p))
			return
		}
		c.rep.ProviderRecords++
		c.perProvider[string(p)]++
		c.need(ms, kindProvider, &k)
		if s.isIndexed(peer.ID(p)) {
			ik := peerKey(nil, peer.ID(p), &k)
			if !c.has(ik) {
				if c.unindexed++; c.unindexed <= maxListed {
					c.rep.problem("peer index: no entry for the record %s of %s", k.String(), peer.ID(p))
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return c.walk(ctx, "value records", []byte{tagValue}, tagEnd(tagValue), func(key, v []byte) {
		if len(key) != 1+kk {
			c.bad("value record key %x is malformed", key)
			return
		}
		var k record.KadKey
		copy(k[:], key[1:])
		ms, ok := verifyValue(v)
		if !ok {
			c.bad("value record %s fails its checksum", k.String())
			return
		}
		c.rep.ValueRecords++
		c.need(ms, kindValue, &k)
	})
}

func (c *checker) bad(format string, args ...any) {
	if c.badRecords++; c.badRecords <= maxListed {
		c.rep.problem(format, args...)
	}
}

// has reports whether key is stored; a key it cannot read (damage,
// reported by the sstable check) counts as stored.
func (c *checker) has(key []byte) bool {
	v, err := c.s.get(key)
	return v != nil || (err != nil && pebble.IsCorruptionError(err))
}

func (c *checker) need(ms int64, kind byte, k *record.KadKey) {
	var e [expiryHead + 4]byte
	copy(e[:], expiryKey(nil, ms, kind, k))
	c.due = append(c.due, e)
}

// indexes checks the time index, the peer index's entries and the counts.
func (c *checker) indexes(ctx context.Context) error {
	s, rep := c.s, c.rep
	if c.badRecords > maxListed {
		rep.problem("… %d records in all fail their checksum", c.badRecords)
	}
	if c.unindexed > maxListed {
		rep.problem("… %d records in all have no peer index entry", c.unindexed)
	}
	// Every record needs its time-index entry: sort what the records need
	// and walk the index, which is in the same order.
	slices.SortFunc(c.due, func(a, b [expiryHead + 4]byte) int { return bytes.Compare(a[:], b[:]) })
	i, missing := 0, 0
	err := c.walk(ctx, "time index", []byte{tagExpiry}, tagEnd(tagExpiry), func(key, _ []byte) {
		if len(key) < expiryHead+4 {
			return
		}
		for i < len(c.due) && bytes.Compare(c.due[i][:], key[:expiryHead+4]) < 0 {
			c.missingEntry(&missing, c.due[i])
			i++
		}
		for i < len(c.due) && bytes.Equal(c.due[i][:], key[:expiryHead+4]) {
			i++
		}
	})
	if err != nil {
		return err
	}
	for ; i < len(c.due); i++ {
		c.missingEntry(&missing, c.due[i])
	}
	if missing > maxListed {
		rep.problem("… %d records in all have no time-index entry (Expire would never remove them)", missing)
	}
	// Every peer index entry needs its record.
	orphans := 0
	err = c.walk(ctx, "peer index", []byte{tagPeer}, tagEnd(tagPeer), func(key, _ []byte) {
		p, k, ok := parsePeerKey(key)
		if !ok {
			return
		}
		if !c.has(provKey(nil, &k, peer.ID(p))) {
			if orphans++; orphans <= maxListed {
				rep.problem("peer index: entry for %s of %s without its record", k.String(), peer.ID(p))
			}
		}
	})
	if err != nil {
		return err
	}
	if np, nv := s.nProviders.Load(), s.nValues.Load(); np != rep.ProviderRecords || nv != rep.ValueRecords {
		rep.problem("record counts say %d provider and %d value records, the store holds %d and %d", np, nv, rep.ProviderRecords, rep.ValueRecords)
	}
	if maintained, err := s.get(metaPerProvider); err == nil && maintained != nil {
		stored := map[string]int64{}
		err := c.walk(ctx, "provider counts", []byte{tagCount}, tagEnd(tagCount), func(key, v []byte) {
			n, _ := binary.Uvarint(v)
			stored[string(key[1:])] = int64(n)
		})
		if err != nil {
			return err
		}
		wrong := 0
		for p, n := range c.perProvider {
			if stored[p] != n {
				if wrong++; wrong <= maxListed {
					rep.problem("provider count of %s says %d, the store holds %d", peer.ID(p), stored[p], n)
				}
			}
			delete(stored, p)
		}
		for p, n := range stored {
			if n != 0 {
				if wrong++; wrong <= maxListed {
					rep.problem("provider count of %s says %d, the store holds none", peer.ID(p), n)
				}
			}
		}
	}
	return nil
}

func (c *checker) missingEntry(missing *int, e [expiryHead + 4]byte) {
	if *missing++; *missing <= maxListed {
		ms := int64(binary.BigEndian.Uint64(e[1:]))
		c.rep.problem("time index: no entry for a %c record of key %x… expiring at %d ms", e[expiryHead-1], e[expiryHead:], ms)
	}
}

// SalvageReport is what Salvage copied.
type SalvageReport struct {
	ProviderRecords, ValueRecords int64
	// Skipped counts the damaged ranges and records that could not be read.
	Skipped int
	// FromLog counts the records recovered from damaged write-ahead logs
	// Open kept (those after the damage, which its replay dropped).
	FromLog int64
	// FromFiles is set when the store did not open and the records were
	// read from its sstables and logs one by one (salvage.go).
	FromFiles bool
}

// Salvage copies every live record it can read from the store in src into a
// new store in dst (which must not hold one), stepping over damage, as
// `kadstore check --repair` does. The new store has every index and count
// built afresh, and the peer indexes src had (or opts asks for). A store
// that does not open (a damaged MANIFEST) is read file by file instead
// (salvage.go). opts configure both stores.
func Salvage(ctx context.Context, src, dst string, opts Options) (*SalvageReport, error) {
	opts.EnsureDefaults()
	if ok, err := dirEmpty(opts, dst); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("pebblestore: salvage: %s is not empty", dst)
	}
	ropts := opts
	ropts.ReadOnly = true
	from, err := Open(src, ropts)
	wopts := opts
	wopts.ReadOnly = false
	switch {
	case errors.Is(err, ErrLocked), errors.Is(err, fs.ErrNotExist):
		return nil, err
	case err != nil:
		// The store does not open: read its files one by one
		// (salvage.go), with the peer indexes opts asks for.
		opts.Logger.Warn("pebblestore: the store does not open; salvaging from its sstables and logs", "dir", src, "error", firstLine(err))
		to, err := Open(dst, wopts)
		if err != nil {
			return nil, err
		}
		rep := &SalvageReport{FromFiles: true}
		if err := salvageFiles(ctx, opts, src, to, rep); err != nil {
			to.Close()
			return nil, err
		}
		return rep, to.Close()
	}
	defer from.Close()
	wopts.IndexAllPeers = from.indexAll
	for p := range from.indexed {
		wopts.IndexedPeers = append(wopts.IndexedPeers, p)
	}
	slices.SortFunc(wopts.IndexedPeers, func(a, b peer.ID) int { return cmp.Compare(a, b) })
	to, err := Open(dst, wopts)
	if err != nil {
		return nil, err
	}
	rep := &SalvageReport{}
	for _, kind := range []store.Kind{store.Providers, store.Values} {
		var cur store.Cursor
		for {
			page, err := from.Scan(ctx, store.ScanOptions{Kind: kind, Limit: 1000, After: cur})
			if err != nil {
				to.Close()
				return nil, err
			}
			rep.Skipped += page.Skipped
			if len(page.Providers) > 0 {
				if err := to.AddProviders(ctx, page.Providers...); err != nil {
					to.Close()
					return nil, err
				}
				rep.ProviderRecords += int64(len(page.Providers))
			}
			for _, v := range page.Values {
				if err := to.PutValue(ctx, v); err != nil {
					to.Close()
					return nil, err
				}
				rep.ValueRecords++
			}
			if cur = page.Next; cur == nil {
				break
			}
		}
	}
	if err := salvageLogs(ctx, from, to, rep); err != nil {
		to.Close()
		return nil, err
	}
	return rep, to.Close()
}

// salvageLogs adds to to the records of the commits after the damage in the
// damaged logs Open kept in from's directory, where to holds no newer
// version of them.
func salvageLogs(ctx context.Context, from, to *Store, rep *SalvageReport) error {
	kept, err := keptLogs(from.opts.FS, from.dir)
	if err != nil {
		return err
	}
	for path, num := range kept {
		var applyErr error
		_, err := scanWAL(from.opts.FS, path, num, func(repr []byte) {
			if applyErr != nil {
				return
			}
			provs, vals := lostRecords(repr)
			np, nv, err := applyIfNewer(ctx, to, provs, vals)
			rep.FromLog += np + nv
			applyErr = err
		})
		if err != nil {
			return fmt.Errorf("pebblestore: salvage %s: %w", path, err)
		}
		if applyErr != nil {
			return fmt.Errorf("pebblestore: salvage %s: %w", path, applyErr)
		}
	}
	return nil
}

// dirEmpty reports whether dir is missing or empty.
func dirEmpty(opts Options, dir string) (bool, error) {
	names, err := opts.FS.List(dir)
	if err != nil {
		if _, serr := opts.FS.Stat(dir); serr != nil {
			return true, nil
		}
		return false, err
	}
	return len(names) == 0, nil
}
