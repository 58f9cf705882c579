package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store"
)

var exportCommand = command{
	name:    "export",
	summary: "write the records of a data directory as NDJSON, one record a line",
	run:     runExport,
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "export [--data DIR] [--kind providers|values] [-o FILE]", stderr)
	var t target
	fs.StringVar(&t.data, "data", "./kadstore-data", "data directory of a stopped node")
	kind := fs.String("kind", "", "export only providers or values (default both)")
	out := fs.String("o", "-", `output file ("-" for standard output)`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var kinds []store.Kind
	switch *kind {
	case "":
	case "providers":
		kinds = []store.Kind{store.Providers}
	case "values":
		kinds = []store.Kind{store.Values}
	default:
		fmt.Fprintf(stderr, "export: --kind providers or values, not %q\n", *kind)
		return errUsage
	}
	s, err := t.openStore(true)
	if err != nil {
		return err
	}
	defer s.Close()
	var total int64
	if st, err := s.Stats(ctx); err == nil {
		total = st.ProviderRecords + st.ValueRecords
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bar := progressOn(stderr)
	if bar != nil {
		bar.Start("export", total)
	}
	n, err := ndjson.Export(ctx, s, w, func(done int64) {
		if bar != nil {
			bar.Add(done - bar.done.Load())
		}
	}, kinds...)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && f != os.Stdout {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "exported %d records\n", n)
	return nil
}

// progressOn returns a progress bar on w when w is a terminal, else nil.
func progressOn(w io.Writer) *progressBar {
	if f, ok := w.(*os.File); ok {
		return newProgress(f)
	}
	return nil
}
