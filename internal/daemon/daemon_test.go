package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

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
