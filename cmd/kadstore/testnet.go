package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/kadstore/kadstore/internal/testnet"
)

var testnetCommand = command{
	name:    "testnet",
	summary: "run an N-node DHT on loopback that provides, finds and restarts (offline demo)",
	run:     runTestnet,
}

func runTestnet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("testnet", "testnet [-n N] [--keys K] [--dir DIR]", stderr)
	var opts testnet.Options
	fs.IntVar(&opts.Nodes, "n", 20, "number of nodes")
	fs.IntVar(&opts.Keys, "keys", 100, "number of keys to provide and find")
	fs.StringVar(&opts.Dir, "dir", "", "directory for the nodes' stores (default a temporary one, removed after)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if opts.Nodes < 2 || opts.Keys < 1 {
		fmt.Fprintln(stderr, "testnet: -n must be at least 2 and --keys at least 1")
		return errUsage
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "kadstore-testnet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	opts.Log = stdout
	sum, err := testnet.Run(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nsummary: %d nodes, %d keys: provided %d, found %d (%d with addresses); restart kept %d of %d records and %d of %d keys were found again\n",
		sum.Nodes, sum.Keys, sum.Provided, sum.Found, sum.FoundWithAddrs, sum.RecordsAfter, sum.RecordsBefore, sum.FoundAfterRestart, sum.RestartKeys)
	if sum.Found != sum.Keys || sum.RecordsAfter != sum.RecordsBefore || sum.FoundAfterRestart != sum.RestartKeys {
		return fmt.Errorf("not every key was found")
	}
	return nil
}
