package main

import (
	"context"
	"io"

	"github.com/kadstore/kadstore/internal/api"
)

var statsCommand = command{
	name:    "stats",
	summary: "print record counts of a data directory (--data) or a running node (--api)",
	run:     runStats,
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("stats", "stats [--api ADDR | --data DIR]", stderr)
	var t target
	t.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := t.resolve(); err != nil {
		return err
	}
	defer t.close()
	var resp api.StatsResponse
	if t.useAPI() {
		if err := t.getJSON(ctx, "/v1/stats", nil, &resp); err != nil {
			return err
		}
		return printJSON(stdout, resp)
	}
	s, err := t.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := s.Stats(ctx)
	if err != nil {
		return err
	}
	resp = api.StatsResponse{ProviderRecords: st.ProviderRecords, ValueRecords: st.ValueRecords, DiskBytes: st.DiskBytes}
	return printJSON(stdout, resp)
}
