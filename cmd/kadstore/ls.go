package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store"
)

var lsCommand = command{
	name:    "ls",
	summary: "list one page of records: ls providers|values [--after CURSOR] [--limit N]",
	run:     runLs,
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ls", "ls providers|values [--after CURSOR] [--limit N] [--api ADDR | --data DIR]", stderr)
	var t target
	t.register(fs)
	after := fs.String("after", "", "cursor printed by the previous page")
	limit := fs.Int("limit", 100, "records in the page (1 to 10000)")
	pos, err := parseWithArgs(fs, args, 1)
	if err != nil {
		return err
	}
	kind := pos[0]
	if kind != "providers" && kind != "values" {
		fmt.Fprintf(stderr, "ls: list providers or values, not %q\n", kind)
		return errUsage
	}
	if *limit <= 0 || *limit > 10_000 {
		fmt.Fprintln(stderr, "ls: --limit must be from 1 to 10000")
		return errUsage
	}
	if err := t.resolve(); err != nil {
		return err
	}
	defer t.close()
	var page api.ScanResponse
	if t.useAPI() {
		q := url.Values{"kind": {kind}, "limit": {strconv.Itoa(*limit)}}
		if *after != "" {
			q.Set("after", *after)
		}
		if err := t.getJSON(ctx, "/v1/scan", q, &page); err != nil {
			return err
		}
	} else {
		s, err := t.openStore()
		if err != nil {
			return err
		}
		defer s.Close()
		opts := store.ScanOptions{Kind: store.Providers, Limit: *limit}
		if kind == "values" {
			opts.Kind = store.Values
		}
		if *after != "" {
			if opts.After, err = api.DecodeCursor(*after); err != nil {
				return err
			}
		}
		p, err := s.Scan(ctx, opts)
		if err != nil {
			return err
		}
		for _, r := range p.Providers {
			page.Records = append(page.Records, ndjson.FromProvider(r))
		}
		for _, r := range p.Values {
			page.Records = append(page.Records, ndjson.FromValue(r))
		}
		if p.Next != nil {
			page.Next = api.EncodeCursor(p.Next)
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for _, r := range page.Records {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if page.Next != "" {
		fmt.Fprintf(stderr, "next page: --after %s\n", page.Next)
	}
	return nil
}
