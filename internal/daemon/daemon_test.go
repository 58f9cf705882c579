package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/internal/daemon"
)

func config(dir string) daemon.Config {
	return daemon.Config{
		DataDir:   dir,
		Listen:    []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap: []string{},
		Mode:      "server",
		API:       "127.0.0.1:0",
	}
}

func TestRestartKeepsIdentityAndRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := daemon.Start(ctx, config(dir))
	if err != nil {
		t.Fatal(err)
	}
	id := d.Host.ID()

	// A second daemon on the same directory fails at once.
	if d2, err := daemon.Start(ctx, config(dir)); !errors.Is(err, daemon.ErrLocked) {
		if d2 != nil {
			d2.Close()
		}
		t.Fatalf("second daemon on the same directory: %v, want ErrLocked", err)
	}

	h, _ := mh.Sum([]byte("hello"), mh.SHA2_256, -1)
	c := cid.NewCidV1(cid.Raw, h)
	body, _ := json.Marshal(api.ProvideRequest{Keys: []string{c.String()}})
	resp, err := http.Post("http://"+d.APIAddr().String()+"/v1/provide", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var pr api.ProvideResponse
	json.NewDecoder(resp.Body).Decode(&pr)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(pr.Results) != 1 || pr.Results[0].Error != "" || pr.Results[0].Peers != 0 {
		t.Fatalf("provide with no peers: %d %+v", resp.StatusCode, pr)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d, err = daemon.Start(ctx, config(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Host.ID() != id {
		t.Fatalf("peer ID changed across restart: %s -> %s", id, d.Host.ID())
	}
	provs, err := d.Store.Providers(ctx, h, 0)
	if err != nil || len(provs) != 1 || provs[0].Provider != id || len(provs[0].Addrs) == 0 {
		t.Fatalf("own record after restart: %v %v", provs, err)
	}
	if jobs := d.Jobs(); len(jobs) != 4 {
		t.Fatalf("jobs %v", jobs)
	}
}

func TestBadConfig(t *testing.T) {
	cases := map[string]func(*daemon.Config){
		"mode":      func(c *daemon.Config) { c.Mode = "sideways" },
		"store":     func(c *daemon.Config) { c.Store = "mysql://x" },
		"bootstrap": func(c *daemon.Config) { c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/1"} },
		"job":       func(c *daemon.Config) { c.DisableJobs = []string{"reprovide", "gardening"} },
		"interval":  func(c *daemon.Config) { c.ExpireInterval = -time.Second },
	}
	for name, mutate := range cases {
		cfg := config(t.TempDir())
		mutate(&cfg)
		if d, err := daemon.Start(context.Background(), cfg); !errors.Is(err, daemon.ErrConfig) {
			if d != nil {
				d.Close()
			}
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// Disabled jobs do not run and are not reported; the others are.
func TestDisableJobs(t *testing.T) {
	cfg := config(t.TempDir())
	cfg.DisableJobs = []string{"reprovide", "replicate"}
	d, err := daemon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := d.Jobs()
	if _, ok := got["reprovide"]; ok {
		t.Error("a disabled job is reported")
	}
	if _, ok := got["replicate"]; ok {
		t.Error("a disabled job is reported")
	}
	if _, ok := got["expire"]; !ok || len(got) != 2 {
		t.Errorf("jobs reported: %v, want expire and republish", got)
	}
}

// /metrics has the records the store holds and zeros for counters that saw
// no event yet.
func TestMetricsHaveRecordsAndZeros(t *testing.T) {
	d, err := daemon.Start(context.Background(), config(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, _ := mh.Sum([]byte("metrics"), mh.SHA2_256, -1)
	body, _ := json.Marshal(api.ProvideRequest{Keys: []string{cid.NewCidV1(cid.Raw, h).String()}})
	resp, err := http.Post("http://"+d.APIAddr().String()+"/v1/provide", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mfs, err := d.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			if m.Gauge != nil {
				found[name] = m.Gauge.GetValue()
			} else if m.Counter != nil {
				found[name] = m.Counter.GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"kadstore_store_records,kind=providers":                     1,
		"kadstore_store_records,kind=values":                        0,
		"kadstore_kad_records_rejected_total,reason=invalid":        0,
		"kadstore_kad_records_rejected_total,reason=rate_limited":   0,
		"kadstore_kad_bootstrap_attempts_total,outcome=failed":      0,
		"kadstore_kad_messages_received_total,outcome=ok,type=PING": 0,
	} {
		if got, ok := found[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
}

// The daemon publishes its API address in the data directory while it runs.
func TestAPIAddressPublished(t *testing.T) {
	dir := t.TempDir()
	d, err := daemon.Start(context.Background(), config(dir))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "api"))
	if err != nil || strings.TrimSpace(string(b)) != "http://"+d.APIAddr().String() {
		t.Fatalf("api file %q (%v), want http://%s", b, err, d.APIAddr())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "api")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("api file after Close: %v", err)
	}
}
