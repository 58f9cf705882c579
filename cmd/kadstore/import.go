package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/kadstore/kadstore/internal/ndjson"
)

var importCommand = command{
	name:    "import",
	summary: "load records into a data directory: NDJSON (import FILE) or a go-libp2p-kad-dht datastore (--from-datastore DIR)",
	run:     runImport,
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", "import [--data DIR] FILE|-  or  import [--data DIR] --from-datastore DIR", stderr)
	var t target
	fs.StringVar(&t.data, "data", "./kadstore-data", "data directory of a stopped node (created if missing)")
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
	if err := os.MkdirAll(t.data, 0o700); err != nil {
		return err
	}
	s, err := t.openStore(false)
	if err != nil {
		return err
	}
	defer s.Close()
	bar := progressOn(stderr)
	if *fromDS != "" {
		return importDatastore(ctx, *fromDS, s, stdout, bar)
	}

	var r io.Reader = os.Stdin
	var total int64
	if file != "-" {
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
	return err
}

func printReasons(w io.Writer, reasons []error, skipped int64) {
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
func parseOptionalArg(fs interface {
	Parse([]string) error
	Args() []string
}, args []string) (string, error) {
	var pos string
	if len(args) > 0 && (args[0] == "-" || args[0][0] != '-') {
		pos, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", errUsage
	}
	if rest := fs.Args(); len(rest) > 0 {
		if pos != "" || len(rest) > 1 {
			return "", errUsage
		}
		pos = rest[0]
	}
	return pos, nil
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
