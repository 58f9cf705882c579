package main_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// kadstoreBin is the kadstore binary built once for the tests that run it as
// a real process.
var kadstoreBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kadstore-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kadstoreBin = filepath.Join(dir, "kadstore")
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gotool); err != nil {
		gotool = "go"
	}
	build := exec.Command(gotool, "build", "-o", kadstoreBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// kadstore runs the binary with args; stdout and stderr are pipes, not a
// terminal. It returns both outputs and the exit status.
func kadstore(t *testing.T, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), kadstoreBin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("running kadstore %q: %v", args, err)
	}
	return out.Bytes(), errOut.Bytes(), code
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "Commands:"},
		{[]string{"help"}, 0, "bench"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"bench", "-h"}, 0, "-backend"},
		{[]string{"bench", "--backend", "nope"}, 2, `unknown backend "nope"`},
		{[]string{"bench", "--n", "0"}, 2, "--n must be positive"},
		{[]string{"bench", "--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"bench", "stray"}, 2, "unexpected arguments"},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			stdout, stderr, code := kadstore(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !bytes.Contains(stderr, []byte(tc.inStderr)) {
				t.Errorf("stderr does not mention %q:\n%s", tc.inStderr, stderr)
			}
			if len(stdout) != 0 {
				t.Errorf("stdout is not empty:\n%s", stdout)
			}
		})
	}
}
