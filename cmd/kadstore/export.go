package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store"
)

var exportCommand = command{
	name:    "export",
	summary: "write the records of a data directory or a running node as NDJSON, one record a line",
	run:     runExport,
}

// exportPage is the page size of an export through the API.
const exportPage = 1000

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", "export [--data DIR | --api ADDR] [--kind providers|values] [-o FILE]", stderr)
	var t target
	t.register(fs)
	kind := fs.String("kind", "", "export only providers or values (default both)")
	out := fs.String("o", "-", `output file ("-" for standard output)`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var kinds []store.Kind
	switch *kind {
	case "":
		kinds = []store.Kind{store.Providers, store.Values}
	case "providers":
		kinds = []store.Kind{store.Providers}
	case "values":
		kinds = []store.Kind{store.Values}
	default:
		fmt.Fprintf(stderr, "export: --kind providers or values, not %q\n", *kind)
		return errUsage
	}
	if err := t.resolve(); err != nil {
		return err
	}
	defer t.close()
	var s store.Store
	var total int64
	if t.useAPI() {
		var st api.StatsResponse
		if err := t.getJSON(ctx, "/v1/stats", nil, &st); err != nil {
			return err
		}
		total = st.ProviderRecords + st.ValueRecords
	} else {
		var err error
		if s, err = t.openStore(); err != nil {
			return err
		}
		defer s.Close()
		if st, err := s.Stats(ctx); err == nil {
			total = st.ProviderRecords + st.ValueRecords
		}
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
	progress := func(done int64) {
		if bar != nil {
			bar.Add(done - bar.done.Load())
		}
	}
	var n int64
	var err error
	if t.useAPI() {
		n, err = exportAPI(ctx, &t, w, progress, kinds)
	} else {
		n, err = ndjson.Export(ctx, s, w, progress, kinds...)
	}
	if bar != nil {
		bar.Finish()
	}
	if errors.Is(err, ndjson.ErrIncomplete) {
		// Every readable record was written: say how many, then fail.
		fmt.Fprintf(stderr, "exported %d records\n", n)
		return err
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

// exportAPI writes what ndjson.Export writes, page by page from the node's
// /v1/scan: the same lines in the same order.
func exportAPI(ctx context.Context, t *target, w io.Writer, progress ndjson.Progress, kinds []store.Kind) (int64, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var n, skipped int64
	for _, k := range kinds {
		q := url.Values{"kind": {"providers"}, "limit": {fmt.Sprint(exportPage)}}
		if k == store.Values {
			q.Set("kind", "values")
		}
		for {
			var page api.ScanResponse
			if err := t.getJSON(ctx, "/v1/scan", q, &page); err != nil {
				return n, err
			}
			skipped += int64(page.Skipped)
			for _, l := range page.Records {
				if err := enc.Encode(l); err != nil {
					return n, err
				}
				n++
			}
			progress(n)
			if page.Next == "" {
				break
			}
			q.Set("after", page.Next)
		}
	}
	return n, ndjson.Incomplete(skipped)
}

// progressOn returns a progress bar on w when w is a terminal, else nil.
func progressOn(w io.Writer) *progressBar {
	if f, ok := w.(*os.File); ok {
		return newProgress(f)
	}
	return nil
}
