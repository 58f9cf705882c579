package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kadstore/kadstore/internal/datadir"
	"github.com/kadstore/kadstore/store/pebblestore"
)

var checkCommand = command{
	name:    "check",
	summary: "verify a stopped node's store (checksums, log, indexes); --repair NEWDIR salvages it",
	run:     runCheck,
}

// errDamaged is check's error for a store with faults: the report is on
// stdout, and the exit status is 1.
var errDamaged = errors.New("the store is damaged")

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "check [--data DIR] [--repair NEWDIR]", stderr)
	data := fs.String("data", datadir.Default, "data directory of a stopped node")
	repair := fs.String("repair", "", "copy every record that can be read into a new data directory NEWDIR (with the node's identity), with its indexes rebuilt")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir := datadir.New(*data)
	sdir := dir.StorePath()
	if _, err := os.Stat(sdir); err != nil {
		return fmt.Errorf("no store in %s: %w", *data, err)
	}
	lock, err := dir.Lock()
	if errors.Is(err, datadir.ErrLocked) {
		return fmt.Errorf("%w\n(check reads the store's files: stop the node first)", err)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	opts := pebblestore.Options{}
	rep, err := pebblestore.Check(ctx, sdir, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d sstables, %d provider records, %d value records\n", sdir, rep.Tables, rep.ProviderRecords, rep.ValueRecords)
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "DAMAGE:", p)
	}
	if *repair == "" {
		if !rep.OK() {
			fmt.Fprintf(stdout, "%d problems; `kadstore check --data %s --repair NEWDIR` copies what can be read into NEWDIR\n", len(rep.Problems), *data)
			return fmt.Errorf("%w: %d problems", errDamaged, len(rep.Problems))
		}
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	return salvage(ctx, dir, datadir.New(*repair), stdout)
}

// salvage copies the store of data into a new data directory dst, with the
// node's identity, and checks the copy.
func salvage(ctx context.Context, data, dst datadir.Dir, stdout io.Writer) error {
	lock, err := dst.Lock()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	key, err := os.ReadFile(data.IdentityPath())
	switch {
	case err == nil:
		if err := os.WriteFile(dst.IdentityPath(), key, 0o600); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	sdst := dst.StorePath()
	sr, err := pebblestore.Salvage(ctx, data.StorePath(), sdst, pebblestore.Options{})
	if err != nil {
		return fmt.Errorf("salvage: %w", err)
	}
	how := ""
	if sr.FromFiles {
		how = ", read from the sstables and logs one by one (the store does not open)"
	}
	if sr.FromLog > 0 {
		how += fmt.Sprintf(", and %d records from damaged write-ahead logs", sr.FromLog)
	}
	fmt.Fprintf(stdout, "salvaged into %s: %d provider records, %d value records (live ones)%s; %d damaged ranges or records skipped\n",
		sdst, sr.ProviderRecords, sr.ValueRecords, how, sr.Skipped)
	rep, err := pebblestore.Check(ctx, sdst, pebblestore.Options{})
	if err != nil {
		return err
	}
	if !rep.OK() {
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, "DAMAGE in the copy:", p)
		}
		return fmt.Errorf("%w: the salvaged copy has %d problems", errDamaged, len(rep.Problems))
	}
	fmt.Fprintf(stdout, "the copy checks sound; run the node on it with --data %s\n", dst)
	return nil
}
