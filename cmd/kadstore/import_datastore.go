package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kadstore/kadstore/internal/dsimport"
	"github.com/kadstore/kadstore/store"
)

// importDatastore reads the provider records of a go-libp2p-kad-dht (or Kubo)
// datastore directory, LevelDB or Pebble, into s. The datastore holds no
// addresses, so the imported records have none until each provider
// re-announces; the summary says so.
func importDatastore(ctx context.Context, dir string, s store.Store, stdout io.Writer, bar *progressBar) error {
	opts := dsimport.Options{}
	if bar != nil {
		// The entry count is unknown until the scan ends: the bar shows
		// the rate, with no ETA.
		bar.Start("import (records)", 0)
		var last int64
		opts.Progress = func(done, skipped int64) {
			bar.Add(done + skipped - last)
			last = done + skipped
		}
	}
	res, err := dsimport.Import(ctx, dir, s, opts)
	if bar != nil {
		bar.Finish()
	}
	if res.Dir != "" {
		fmt.Fprintf(stdout, "read %s datastore %s\n", res.Format, res.Dir)
	}
	fmt.Fprintf(stdout, "imported %d provider records (without addresses: the datastore does not keep them), skipped %d\n", res.Imported, res.Skipped)
	if res.Clamped > 0 {
		fmt.Fprintf(stdout, "  %d records were dated in the future; their expiry is now + 48h\n", res.Clamped)
	}
	printReasonCounts(stdout, res.Reasons)
	for _, e := range res.Examples {
		fmt.Fprintf(stdout, "  e.g. %v\n", e)
	}
	if errors.Is(err, dsimport.ErrLocked) {
		return fmt.Errorf("%w\n(a running node holds %s open)", err, dir)
	}
	return err
}
