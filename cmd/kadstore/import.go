package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/kadstore/kadstore/internal/datadir"
	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store/pebblestore"
)

var importCommand = command{
	name:    "import",
	summary: "load records into a data directory: NDJSON (import FILE) or a go-libp2p-kad-dht datastore (--from-datastore DIR)",
	run:     runImport,
}

// errNothingImported is import's error when the input had records but none
// could be stored: the exit status is 1.
var errNothingImported = errors.New("no record imported")

// maxPrintedReasons is how many skipped lines import describes one by one.
const maxPrintedReasons = 10

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", "import [--data DIR] FILE|-  or  import [--data DIR] --from-datastore DIR", stderr)
	data := fs.String("data", datadir.Default, "data directory of a stopped node (created if missing)")
	fromDS := fs.String("from-datastore", "", "a go-libp2p-kad-dht / Kubo datastore directory (LevelDB or Pebble, or the Kubo repository) to read /providers/ records from; addresses are not in that format")
	file, err := parseOptionalArg(fs, args)
	if err != nil {
		return err
	}
	if (*fromDS == "") == (file == "") {
		fmt.Fprintln(stderr, "import: name either an NDJSON file (or -) or --from-datastore DIR")
		fs.Usage()
		return errUsage
	}

	// The input first: a missing file creates no data directory.
	var r io.Reader = os.Stdin
	var total int64
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			total = fi.Size()
		}
		r = f
	}
	if *fromDS != "" {
		if _, err := os.Stat(*fromDS); err != nil {
			return err
		}
	}

	// Import writes the store: it holds the directory's lock, so no node
	// runs on it meanwhile. A running node takes no foreign records through
	// its API (peers' records reach it over the DHT), so stop it first.
	lock, err := datadir.New(*data).Lock()
	if errors.Is(err, datadir.ErrLocked) {
		return fmt.Errorf("%w\n(import writes the store: stop the node first)", err)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	s, err := lock.OpenStore(pebblestore.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	bar := progressOn(stderr)
	if *fromDS != "" {
		return importDatastore(ctx, *fromDS, s, stdout, bar)
	}

	cr := &countingReader{r: r}
	if bar != nil {
		bar.Start("import (bytes)", total)
	}
	res, err := ndjson.Import(ctx, s, cr, func(int64) {
		if bar != nil {
			bar.Add(cr.n - bar.done.Load())
		}
	})
	if bar != nil {
		bar.Finish()
	}
	fmt.Fprintf(stdout, "imported %d records, skipped %d\n", res.Imported, res.Skipped)
	printReasons(stdout, res.Reasons, res.Skipped)
	if err != nil {
		return err
	}
	if res.Imported == 0 && res.Skipped > 0 {
		return fmt.Errorf("%w: every one of the %d records was skipped", errNothingImported, res.Skipped)
	}
	return nil
}

// printReasons describes the first maxPrintedReasons skipped lines, then
// counts the rest.
func printReasons(w io.Writer, reasons []error, skipped int64) {
	if len(reasons) > maxPrintedReasons {
		reasons = reasons[:maxPrintedReasons]
	}
	for _, r := range reasons {
		fmt.Fprintf(w, "  skipped: %v\n", r)
	}
	if int64(len(reasons)) < skipped {
		fmt.Fprintf(w, "  … and %d more\n", skipped-int64(len(reasons)))
	}
}

func printReasonCounts(w io.Writer, reasons map[string]int64) {
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  skipped %d: %s\n", reasons[k], k)
	}
}

// parseOptionalArg parses flags around at most one positional argument.
func parseOptionalArg(fs *flag.FlagSet, args []string) (string, error) {
	var pos string
	if len(args) > 0 && (args[0] == "-" || !strings.HasPrefix(args[0], "-")) {
		pos, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", errUsage
	}
	if rest := fs.Args(); len(rest) > 0 {
		if pos != "" || len(rest) > 1 {
			fmt.Fprintf(fs.Output(), "want at most one argument, got %q\n", append(nonEmpty(pos), rest...))
			fs.Usage()
			return "", errUsage
		}
		pos = rest[0]
	}
	return pos, nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
