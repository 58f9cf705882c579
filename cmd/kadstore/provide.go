package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kadstore/kadstore/internal/api"
)

var provideCommand = command{
	name:    "provide",
	summary: "announce CIDs from a running node: provide [--data DIR | --api ADDR] CID…",
	run:     runProvide,
}

func runProvide(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("provide", "provide [--data DIR | --api ADDR] [--api-token T] CID…", stderr)
	var t target
	t.register(fs)
	token := fs.String("api-token", os.Getenv("KADSTORE_API_TOKEN"), "API token, if the node has one (default $KADSTORE_API_TOKEN)")
	keys, err := parseList(fs, args)
	if err != nil {
		return err
	}
	if err := t.resolveRunning(); err != nil {
		return err
	}
	var resp api.ProvideResponse
	if err := t.postJSON(ctx, "/v1/provide", *token, api.ProvideRequest{Keys: keys}, &resp); err != nil {
		return err
	}
	failed := 0
	for _, r := range resp.Results {
		if r.Error != "" {
			failed++
			fmt.Fprintf(stdout, "%s\terror: %s\n", r.Key, r.Error)
			continue
		}
		fmt.Fprintf(stdout, "%s\tstored, announced to %d peers\n", r.Key, r.Peers)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d keys failed", failed, len(resp.Results))
	}
	return nil
}

// parseList parses flags and returns the positional arguments (at least
// one), which may stand before or after the flags.
func parseList(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fmt.Fprintln(fs.Output(), "at least one CID is needed")
		fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}
