package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

var versionCommand = command{
	name:    "version",
	summary: "print the version of kadstore and of the libraries it is built with",
	run:     runVersion,
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	version, revision := "(devel)", ""
	deps := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
		for _, d := range bi.Deps {
			deps[d.Path] = d.Version
		}
	}
	fmt.Fprintf(stdout, "kadstore %s", version)
	if revision != "" {
		fmt.Fprintf(stdout, " (%s)", revision)
	}
	fmt.Fprintf(stdout, " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, m := range []string{"github.com/libp2p/go-libp2p", "github.com/cockroachdb/pebble/v2", "github.com/jackc/pgx/v5"} {
		if v, ok := deps[m]; ok {
			fmt.Fprintf(stdout, "  %s %s\n", m, v)
		}
	}
	return nil
}
