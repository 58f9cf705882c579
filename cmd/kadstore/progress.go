package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// progressBar draws the progress of long phases on a terminal. Any subcommand
// with long work (bench, import, export) uses it through newProgress, which
// gives no bar at all when the output is not a terminal, so pipes, files and
// logs never receive carriage returns or escape codes.
//
// Add may be called from many goroutines; drawing happens on one goroutine a
// few times a second, so a hot loop pays one atomic add per call.
type progressBar struct {
	w io.Writer

	done  atomic.Int64
	mu    sync.Mutex // guards phase, total, start, stop against Start/Finish
	phase string
	total int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// progressInterval is how often the bar is redrawn.
const progressInterval = 200 * time.Millisecond

// newProgress returns a bar drawing on f if f is a terminal, else nil.
func newProgress(f *os.File) *progressBar {
	if !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progressBar{w: f}
}

// Start begins a phase of total units (0: unknown).
func (p *progressBar) Start(phase string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.total, p.start = phase, total, time.Now()
	p.done.Store(0)
	p.stop = make(chan struct{})
	p.wg.Add(1)
	go p.loop(p.stop)
}

// Add records n more units done.
func (p *progressBar) Add(n int64) { p.done.Add(n) }

// Finish draws the phase complete and moves to a new line.
func (p *progressBar) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
	fmt.Fprint(p.w, p.line(true), "\n")
}

func (p *progressBar) loop(stop <-chan struct{}) {
	defer p.wg.Done()
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			fmt.Fprint(p.w, p.line(false))
		}
	}
}

// line renders the bar: \r and erase-line, then the phase, a bar, the count,
// the rate and the time left. It reads fields guarded by mu without the lock:
// they are only written by Start and Finish, which stop the loop first.
func (p *progressBar) line(final bool) string {
	const width = 30
	done, total := p.done.Load(), p.total
	if final && total > 0 {
		done = max(done, total)
	}
	elapsed := time.Since(p.start)
	var b strings.Builder
	fmt.Fprintf(&b, "\r\x1b[2K%-18s ", p.phase)
	if total > 0 {
		frac := min(1, float64(done)/float64(total))
		fill := int(frac * width)
		fmt.Fprintf(&b, "[%s%s] %3.0f%%  %s/%s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			frac*100, humanCount(done), humanCount(total))
	} else {
		fmt.Fprintf(&b, "%s", humanCount(done))
	}
	if secs := elapsed.Seconds(); secs > 0 {
		r := float64(done) / secs
		fmt.Fprintf(&b, "  %s/s", humanCount(int64(r)))
		if !final && total > 0 && r > 0 && done < total {
			fmt.Fprintf(&b, "  eta %s", time.Duration(float64(total-done)/r*float64(time.Second)).Round(time.Second))
		}
		if final {
			fmt.Fprintf(&b, "  %s", elapsed.Round(time.Millisecond))
		}
	}
	return b.String()
}

// humanCount formats n with a k, M or G suffix.
func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	default:
		return fmt.Sprint(n)
	}
}
