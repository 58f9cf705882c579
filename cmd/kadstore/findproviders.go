package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/boxo/routing/http/client"
	"github.com/ipfs/boxo/routing/http/types"
	"github.com/ipfs/go-cid"
)

var findProvidersCommand = command{
	name:    "find-providers",
	summary: "look up the providers of a CID through a running node: find-providers [--data DIR | --api ADDR] CID",
	run:     runFindProviders,
}

func runFindProviders(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("find-providers", "find-providers [--data DIR | --api ADDR] CID", stderr)
	var t target
	t.register(fs)
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	pos, err := parseWithArgs(fs, args, 1)
	if err != nil {
		return err
	}
	c, err := cid.Decode(pos[0])
	if err != nil {
		return fmt.Errorf("bad CID %q: %w", pos[0], err)
	}
	if err := t.resolveRunning(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The node speaks the Delegated Routing V1 API; boxo's client reads it.
	cl, err := client.New(t.baseURL(), client.WithDisabledLocalFiltering(true))
	if err != nil {
		return err
	}
	it, err := cl.FindProviders(ctx, c)
	if err != nil {
		return err
	}
	defer it.Close()
	n := 0
	for it.Next() {
		res := it.Val()
		if res.Err != nil {
			return res.Err
		}
		pr, ok := res.Val.(*types.PeerRecord)
		if !ok || pr.ID == nil {
			continue
		}
		n++
		fmt.Fprintf(stdout, "%s", pr.ID)
		for _, a := range pr.Addrs {
			fmt.Fprintf(stdout, " %s", a)
		}
		fmt.Fprintln(stdout)
	}
	if n == 0 {
		return fmt.Errorf("no providers found for %s", c)
	}
	return nil
}
