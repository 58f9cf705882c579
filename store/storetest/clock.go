package storetest

import (
	"sync"
	"time"
)

// Clock is a fake clock for tests: it stands still until told to move.
// Inject its Now method as store.Options.Now. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading start (without its monotonic reading, which
// means nothing to a fake clock).
func NewClock(start time.Time) *Clock { return &Clock{now: start.Round(0)} }

// Now returns the clock's reading.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d; a negative d moves it back, as a wall clock
// corrected by NTP may.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t.Round(0)
}
