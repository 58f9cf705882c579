package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kadstore/kadstore/record"
)

// RawKey is the key the raw Pebble baseline writes a record under: a kind
// byte, the record's Kademlia key, and the provider ID, the layout a store
// needs for one-seek lookups and keyspace-ordered scans.
func RawKey(dst []byte, r record.ProviderRecord) []byte {
	k := r.KadKey()
	dst = append(dst, 'p')
	dst = append(dst, k[:]...)
	return append(dst, r.Provider...)
}

// rawPebble writes the workload straight into a Pebble database with default
// options, RawKey → record.MarshalProvider, in batches of BatchSize committed
// without sync: the ceiling any Pebble-backed store can reach on these bytes.
// It is timed the same way as the bulk ingest (generation overlapped on its
// own goroutine), so the two are comparable.
func (r *runner) rawPebble(ctx context.Context) error {
	dir := r.dir("raw")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{r.cfg.Logger}})
	if err != nil {
		return fmt.Errorf("bench: raw pebble: %w", err)
	}
	var raw int64
	d, err := r.phase("raw-pebble", r.w.N, func() (int64, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var key, val []byte
		for b := range r.batches(ctx, &raw) {
			batch := db.NewBatch()
			for _, rec := range b {
				key = RawKey(key[:0], rec)
				val = record.AppendProvider(val[:0], rec)
				if err := batch.Set(key, val, nil); err != nil {
					return 0, err
				}
			}
			if err := batch.Commit(pebble.NoSync); err != nil {
				return 0, err
			}
			_ = batch.Close()
			r.cfg.Progress.Add(int64(len(b)))
		}
		return r.w.N, ctx.Err()
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("bench: raw pebble close: %w", cerr)
	}
	if err == nil {
		r.res.RawPebbleDiskBytes, err = dirBytes(dir)
	}
	if !r.cfg.Keep {
		_ = os.RemoveAll(dir)
	}
	r.res.RawPebbleRecordsPerSec = round(rate(r.w.N, d), 0)
	return err
}

// pebbleLogger sends Pebble's log lines to slog: its routine lines ("Found 0
// WALs") at debug level, so they stay out of the benchmark's output.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }

func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Error(fmt.Sprintf(format, args...)) }

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic("pebble: " + msg) // Pebble expects Fatalf not to return
}
