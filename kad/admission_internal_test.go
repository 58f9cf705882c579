package kad

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The peer table never holds more than maxPeers buckets: idle peers (full
// buckets) are forgotten first, and an active one only when none is idle.
func TestWriteAdmissionBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newWriteAdmission(10, 2, 0, 3)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	ids := []peer.ID{"a", "b", "c", "d", "e"}
	for _, p := range ids[:3] {
		if got := a.admit(ctx, p); got != admitOK {
			t.Fatalf("%s: first record refused", p)
		}
	}
	if a.size() != 3 {
		t.Fatalf("size %d, want 3", a.size())
	}
	// "a" drains its bucket; the others refill (they took one token of two,
	// and 0.1 s passes).
	if a.admit(ctx, "a") != admitOK || a.admit(ctx, "a") != admitRefused {
		t.Fatal("a: burst of 2 not enforced")
	}
	now = now.Add(100 * time.Millisecond)
	// A fourth peer evicts the idle b and c, and keeps a, whose bucket is not
	// full: a stays refused.
	if a.admit(ctx, "d") != admitOK {
		t.Fatal("d refused")
	}
	if a.size() != 2 {
		t.Fatalf("size %d after evicting idle peers, want 2 (a, d)", a.size())
	}
	if a.admit(ctx, "a") == admitOK && a.admit(ctx, "a") == admitOK {
		t.Fatal("a's state was lost with idle peers'")
	}
	// With every bucket busy, the table still never grows past 3.
	for i := range 100 {
		p := peer.ID(rune('A' + i))
		a.admit(ctx, p)
		a.admit(ctx, p)
		a.admit(ctx, p)
		if a.size() > 3 {
			t.Fatalf("size %d > 3", a.size())
		}
	}
}

// A record over the rate waits for its token when it is due within maxWait,
// and is refused when later.
func TestWriteAdmissionWait(t *testing.T) {
	a := newWriteAdmission(1000, 1, time.Hour, 10)
	ctx := context.Background()
	for range 3 { // 1 from the burst, then a token every ms
		if got := a.admit(ctx, "p"); got != admitOK {
			t.Fatalf("refused with a token due within maxWait: %d", got)
		}
	}
	b := newWriteAdmission(0.001, 1, time.Second, 10)
	if b.admit(ctx, "p") != admitOK || b.admit(ctx, "p") != admitRefused {
		t.Fatal("a token due in 1000 s was not refused")
	}
	c := newWriteAdmission(0.5, 1, time.Hour, 10)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if c.admit(ctx, "p") != admitOK || c.admit(cctx, "p") != admitCancelled {
		t.Fatal("a wait with a cancelled context did not end")
	}
}

// A burst is spent at no more than twice the rate: past the peak bucket
// (here 100 records), records wait even though the burst is not used up.
func TestWriteAdmissionPeak(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newWriteAdmission(100, 1000, 0, 10)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 100 {
		if a.admit(ctx, "p") != admitOK {
			t.Fatalf("record %d of the peak bucket refused", i)
		}
	}
	if a.admit(ctx, "p") != admitRefused {
		t.Fatal("record 101 admitted at once: the burst is spent faster than twice the rate")
	}
	now = now.Add(time.Second) // 200 peak tokens, capped at 100; 900+100 sustained
	for i := range 100 {
		if a.admit(ctx, "p") != admitOK {
			t.Fatalf("record %d after a second refused", i)
		}
	}
}
