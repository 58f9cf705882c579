package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// Salvage of a store that does not open.
//
// A damaged MANIFEST (or OPTIONS file, or an older write-ahead log) stops
// pebble from opening the store, but the records are still in its sstables
// and logs. salvageFiles reads every sstable and log of the directory on
// its own, without the MANIFEST, and copies each live record into the new
// store unless it holds the same record (same key and provider) with the
// same or a later expiry: records are refreshed with later expiries, so the
// latest version wins without knowing which file is newer. What this cannot
// tell: a record removed (RemoveProvider, DeleteValue) before its expiry
// may come back, and files pebble had made obsolete but not yet deleted are
// read too (their records are older versions, so they lose).

// salvageFiles copies the records of the sstables and logs in dir into to.
func salvageFiles(ctx context.Context, opts Options, dir string, to *Store, rep *SalvageReport) error {
	names, err := opts.FS.List(dir)
	if err != nil {
		return fmt.Errorf("pebblestore: %w", err)
	}
	slices.Sort(names)
	ro := opts.pebbleOptions(nil, newFaults(opts.Logger)).MakeReaderOptions()
	apply := func(provs []record.ProviderRecord, vals []record.ValueRecord) error {
		np, nv, err := applyIfNewer(ctx, to, provs, vals)
		rep.ProviderRecords += np
		rep.ValueRecords += nv
		return err
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := opts.FS.PathJoin(dir, name)
		switch {
		case strings.HasSuffix(name, ".sst"):
			if err := salvageTable(ctx, opts, path, ro, rep, apply); err != nil {
				return err
			}
		case strings.HasSuffix(name, ".log"), strings.HasSuffix(name, ".log"+damagedSuffix):
			num, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSuffix(name, damagedSuffix), ".log"), 10, 64)
			if err != nil {
				continue
			}
			var applyErr error
			d, err := readWAL(opts.FS, path, num, true, func(repr []byte) {
				if applyErr == nil {
					applyErr = apply(lostRecords(repr))
				}
			})
			if err != nil {
				opts.Logger.Warn("pebblestore: salvage: log unreadable", "file", path, "error", err)
				rep.Skipped++
				continue
			}
			if applyErr != nil {
				return applyErr
			}
			if d != nil {
				rep.Skipped++
			}
		}
	}
	return nil
}

// salvageTable copies the records of one sstable, stepping over damaged
// blocks.
func salvageTable(ctx context.Context, opts Options, path string, ro sstable.ReaderOptions, rep *SalvageReport,
	apply func([]record.ProviderRecord, []record.ValueRecord) error) error {
	r, err := openTable(ctx, opts, path, ro)
	if err != nil {
		opts.Logger.Warn("pebblestore: salvage: sstable unreadable", "file", path, "error", firstLine(err))
		rep.Skipped++
		return nil
	}
	defer r.Close()
	it, err := r.NewIter(sstable.NoTransforms, nil, nil, sstable.AssertNoBlobHandles)
	if err != nil {
		opts.Logger.Warn("pebblestore: salvage: sstable unreadable", "file", path, "error", firstLine(err))
		rep.Skipped++
		return nil
	}
	defer it.Close()
	var (
		provs []record.ProviderRecord
		vals  []record.ValueRecord
		last  []byte
	)
	flush := func() error {
		err := apply(provs, vals)
		provs, vals = provs[:0], vals[:0]
		return err
	}
	kv := it.First()
	for {
		for ; kv != nil; kv = it.Next() {
			key := kv.K.UserKey
			last = append(last[:0], key...)
			if kv.Kind() != pebble.InternalKeyKindSet {
				continue
			}
			v, _, err := kv.Value(nil)
			if err != nil {
				break
			}
			provs, vals = appendRecord(provs, vals, key, v)
			if len(provs)+len(vals) >= 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		err := it.Error()
		if err == nil {
			break
		}
		// A damaged block: find the next key that reads.
		rep.Skipped++
		opts.Logger.Warn("pebblestore: salvage: damaged block skipped", "file", path, "after", fmt.Sprintf("%x", last), "error", firstLine(err))
		kv = nil
		for key := range skipTargets(last) {
			if kv = it.SeekGE(key, 0); kv != nil || it.Error() == nil {
				break // a key that reads, or the end of the table
			}
		}
		if kv == nil {
			break
		}
	}
	return flush()
}

// applyIfNewer adds each live record to to unless to holds the same record
// with the same or a later expiry, and returns how many it added.
func applyIfNewer(ctx context.Context, to *Store, provs []record.ProviderRecord, vals []record.ValueRecord) (np, nv int64, err error) {
	now := to.now()
	for _, r := range provs {
		if !to.limits.Live(r.Expires, now) {
			continue
		}
		have, err := to.Providers(ctx, r.Key, 0)
		if err != nil {
			return np, nv, err
		}
		i := slices.IndexFunc(have, func(h store.ProviderRecord) bool { return h.Provider == r.Provider })
		if i >= 0 && !have[i].Expires.Before(r.Expires) {
			continue
		}
		if err := to.AddProviders(ctx, r); err != nil {
			if store.IsRejection(err) {
				continue // a limit of the new store
			}
			return np, nv, err
		}
		if i < 0 {
			np++
		}
	}
	for _, r := range vals {
		if !to.limits.Live(r.Expires, now) {
			continue
		}
		have, err := to.GetValue(ctx, r.Key)
		isNew := errors.Is(err, store.ErrNotFound)
		switch {
		case err == nil && !have.Expires.Before(r.Expires):
			continue
		case err != nil && !isNew:
			return np, nv, err
		}
		if err := to.PutValue(ctx, r); err != nil {
			if store.IsRejection(err) {
				continue
			}
			return np, nv, err
		}
		if isNew {
			nv++
		}
	}
	return np, nv, nil
}
