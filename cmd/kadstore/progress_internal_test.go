package main

// An internal test: the bar only draws on a terminal, which the real-process
// tests do not have, so its rendering is checked here directly.

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	p := &progressBar{w: &buf}
	p.Start("bulk-ingest", 2_000_000)
	p.Add(500_000)
	mid := p.line(false)
	p.Add(1_500_000)
	p.Finish()

	for _, want := range []string{"\r\x1b[2K", "bulk-ingest", " 25%", "500.0k/2.00M", "/s", "eta"} {
		if !strings.Contains(mid, want) {
			t.Errorf("bar at 25%% %q lacks %q", mid, want)
		}
	}
	if !strings.Contains(mid, "["+strings.Repeat("=", 7)+strings.Repeat(" ", 23)+"]") {
		t.Errorf("bar at 25%% %q is not a quarter full", mid)
	}
	out := buf.String()
	if !strings.HasSuffix(out, "\n") || !strings.Contains(out, "100%  2.00M/2.00M") || strings.Contains(out[strings.LastIndex(out, "\r"):], "eta") {
		t.Errorf("finished bar %q: want 100%%, the full count, no eta, and a newline", out)
	}
}

func TestNewProgressNotTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p := newProgress(f); p != nil {
		t.Error("newProgress gave a bar for a regular file")
	}
}

func TestHumanCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 9999: "9999", 10_000: "10.0k", 2_500_000: "2.50M", 3_000_000_000: "3.00G"} {
		if got := humanCount(n); got != want {
			t.Errorf("humanCount(%d) = %q, want %q", n, got, want)
		}
	}
}
