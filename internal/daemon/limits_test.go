package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	mh "github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/daemon"
	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

func start(t *testing.T, mutate func(*daemon.Config)) *daemon.Daemon {
	t.Helper()
	cfg := config(t.TempDir())
	cfg.Store = "memory"
	cfg.NoJobs = true
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func counter(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return total
}

// pingFromNewPeer connects a new host to the daemon's and pings it.
func pingFromNewPeer(t *testing.T, d *daemon.Daemon) error {
	t.Helper()
	h := p2ptest.NewHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: d.Host.ID(), Addrs: d.Host.Addrs()}); err != nil {
		return err
	}
	res := <-ping.Ping(ctx, h, d.Host.ID())
	return res.Error
}

// Silent TCP connections (never handshaken) do not lock new peers out: 300
// from one address, more than go-libp2p's default of 32 + 16 per GiB
// (memory/8) on any machine up to 136 GiB, leave room; and from an address
// other than 127.0.0.1 only 8 are kept, the rest closed at once.
func TestSilentConnectionsDoNotLockOut(t *testing.T) {
	d := start(t, nil)
	p2ptest.SilentConns(t, d.Host, "127.0.0.1", 300)
	// The node accepts connections in order: the new peer's comes after the
	// silent ones.
	if err := pingFromNewPeer(t, d); err != nil {
		t.Fatalf("a new peer could not connect and ping while silent connections are held: %v", err)
	}
	other := p2ptest.SilentConns(t, d.Host, "127.0.0.2", 20)
	p2ptest.WaitUntil(t, 30*time.Second, "12 of 20 connections from 127.0.0.2 closed", func() bool { return p2ptest.Closed(other) == 12 })
	// The resource manager's use is on /metrics.
	if v := counter(t, d.Registry, "libp2p_rcmgr_connections", "dir", "inbound"); v == 0 {
		t.Fatal("no libp2p_rcmgr_connections{dir=inbound} in the daemon's registry")
	}
}

// The per-provider record cap is on by default and refusals are counted.
func TestMaxRecordsPerProvider(t *testing.T) {
	d := start(t, func(c *daemon.Config) { c.MaxRecordsPerProvider = 2 })
	h := p2ptest.NewHost(t)
	st := memstore.New(store.Options{})
	t.Cleanup(func() { st.Close() })
	client, err := kad.New(h, st, kad.Mode(kad.ModeClient))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: d.Host.ID(), Addrs: d.Host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = client.SendAddProviders(ctx, d.Host.ID(), []byte(fmt.Sprintf("key-%d", i)))
	}
	p2ptest.WaitUntil(t, 30*time.Second, "the refusal", func() bool {
		return counter(t, d.Registry, "kadstore_kad_records_rejected_total", "reason", "provider_full") == 1
	})
	if s, err := d.Store.Stats(ctx); err != nil || s.ProviderRecords != 2 {
		t.Fatalf("stored %+v, %v; want 2 provider records", s, err)
	}
}

// /v1/stats shows the mode; the node's own records are served by the
// delegated routing API with its current addresses after a restart on a new
// port.
func TestStatsModeAndOwnAddresses(t *testing.T) {
	dir := t.TempDir()
	cfg := config(dir)
	cfg.NoJobs = true
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var st api.StatsResponse
	getJSON(t, "http://"+d.APIAddr().String()+"/v1/stats", &st)
	if st.Mode != "server" || !st.Serving {
		t.Fatalf("stats mode %q serving %v, want server, true", st.Mode, st.Serving)
	}
	h, _ := mh.Sum([]byte("own"), mh.SHA2_256, -1)
	if err := d.Node.ProvideKey(context.Background(), h, false); err != nil {
		t.Fatal(err)
	}
	old := d.Host.Addrs()
	d.Close()

	d, err = daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Host.Addrs()[0].Equal(old[0]) {
		t.Skip("the restarted node got the same port")
	}
	var resp struct {
		Providers []struct {
			ID    string
			Addrs []string
		}
	}
	getJSON(t, "http://"+d.APIAddr().String()+"/routing/v1/providers/"+cid.NewCidV1(cid.Raw, h).String(), &resp)
	if len(resp.Providers) != 1 || len(resp.Providers[0].Addrs) != len(d.Host.Addrs()) || resp.Providers[0].Addrs[0] != d.Host.Addrs()[0].String() {
		t.Fatalf("own provider served as %+v, want current addresses %v", resp.Providers, d.Host.Addrs())
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// The API serves at most APIMaxConns connections: the next waits until one
// closes.
func TestAPIMaxConns(t *testing.T) {
	d := start(t, func(c *daemon.Config) { c.APIMaxConns = 1 })
	addr := d.APIAddr().String()
	get := func(c net.Conn) error {
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := get(first); err != nil { // the first connection, kept alive
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	done := make(chan error, 1)
	go func() { done <- get(second) }()
	select {
	case err := <-done:
		t.Fatalf("a second connection was served while the first was open: %v", err)
	case <-time.After(200 * time.Millisecond): // a negative check: never a false failure
	}
	first.Close()
	if err := <-done; err != nil {
		t.Fatalf("the second connection after the first closed: %v", err)
	}
}
