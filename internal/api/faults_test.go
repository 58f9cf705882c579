package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/path"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// faultStore is a memstore with switchable faults (a storetest.FailStore),
// reporting a settable Health (a store.HealthReporter, as pebblestore is).
type faultStore struct {
	*storetest.FailStore
	mu      sync.Mutex
	noSpace bool // AddProviders fails with store.ErrNoSpace
	corrupt bool // GetValue and Providers fail with store.ErrCorrupt
	health  store.Health
}

func newFaultStore(s store.Store) *faultStore {
	f := &faultStore{}
	f.FailStore = &storetest.FailStore{Store: s, Fail: f.fail}
	return f
}

func (f *faultStore) fail(_ context.Context, op string) error {
	f.mu.Lock()
	noSpace, corrupt := f.noSpace, f.corrupt
	f.mu.Unlock()
	switch {
	case op == storetest.OpAddProviders && noSpace:
		return fmt.Errorf("pebblestore: add providers: %w", store.ErrNoSpace)
	case (op == storetest.OpGetValue || op == storetest.OpProviders) && corrupt:
		return fmt.Errorf("pebblestore: %s: 000024.sst: %w", op, store.ErrCorrupt)
	}
	return nil
}

func (f *faultStore) set(fn func(*faultStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultStore) Health() store.Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

// Scan panics for a limit of 13: a handler that panics.
func (f *faultStore) Scan(ctx context.Context, opts store.ScanOptions) (store.Page, error) {
	if opts.Limit == 13 {
		panic("scan: unexpected state")
	}
	return f.FailStore.Scan(ctx, opts)
}

// noSpaceNode is the fake DHT node whose PutValue meets a full disk.
type noSpaceNode struct{ *fakeNode }

func (noSpaceNode) PutValue(context.Context, string, []byte) error {
	return fmt.Errorf("kad: put: pebblestore: put value: %w", store.ErrNoSpace)
}

type faultFixture struct {
	*fixture
	fs       *faultStore
	reg      *prometheus.Registry
	errorLog *bytes.Buffer // net/http's own log of the server
}

func setupFaults(t *testing.T, node func(*fakeNode) api.Node) *faultFixture {
	t.Helper()
	mem := memstore.New(store.Options{})
	t.Cleanup(func() { mem.Close() })
	fs := newFaultStore(mem)
	_, id := newKey(t)
	fn := &fakeNode{id: id, s: fs, remote: map[string][]peer.AddrInfo{}, values: map[string][]byte{}, peers: map[peer.ID]peer.AddrInfo{}}
	var n api.Node = fn
	if node != nil {
		n = node(fn)
	}
	reg := prometheus.NewRegistry()
	h := api.New(api.Config{Store: fs, Node: n, Gatherer: reg, Registerer: reg})
	srv := httptest.NewUnstartedServer(h)
	errorLog := &bytes.Buffer{}
	srv.Config.ErrorLog = log.New(&syncWriter{w: errorLog}, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return &faultFixture{fixture: &fixture{srv: srv, node: fn, s: fs}, fs: fs, reg: reg, errorLog: errorLog}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && mf.GetType() == dto.MetricType_COUNTER && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// TestHandlerPanic: a handler that panics answers 500 with a JSON error,
// is counted, and the server answers the next request; net/http logs no
// "panic serving".
func TestHandlerPanic(t *testing.T) {
	f := setupFaults(t, nil)
	code, body := f.do(t, "GET", "/v1/scan?limit=13", "")
	var e struct{ Error string }
	if code != http.StatusInternalServerError || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "scan: unexpected state") {
		t.Fatalf("panicking handler: %d %s, want 500 and a JSON error", code, body)
	}
	if code, body := f.do(t, "GET", "/v1/scan?limit=10", ""); code != http.StatusOK {
		t.Fatalf("the next request: %d %s", code, body)
	}
	if got := counter(t, f.reg, "kadstore_api_panics_total"); got != 1 {
		t.Errorf("kadstore_api_panics_total = %v, want 1", got)
	}
	f.srv.Close() // flushes the server's log
	if strings.Contains(f.errorLog.String(), "panic") {
		t.Errorf("net/http logged the panic:\n%s", f.errorLog)
	}
}

// TestNoSpace: with the disk full, POST /v1/provide answers 507 with the
// message (and each key's error), PUT of an IPNS record 507, while reads
// are served; once space is back, writes are taken again.
func TestNoSpace(t *testing.T) {
	f := setupFaults(t, nil)
	stored := newCid(t, "before")
	if code, body := f.do(t, "POST", "/v1/provide", `{"keys":["`+stored.String()+`"]}`); code != http.StatusOK {
		t.Fatalf("provide: %d %s", code, body)
	}
	f.fs.set(func(f *faultStore) {
		f.noSpace = true
		f.health = store.Health{NoSpace: true, Problems: []string{"disk space: 10 MiB free, below the 64 MiB reserve: writes refused"}}
	})

	c1, c2 := newCid(t, "one"), newCid(t, "two")
	code, body := f.do(t, "POST", "/v1/provide", `{"keys":["`+c1.String()+`","`+c2.String()+`"]}`)
	var pr api.ProvideResponse
	if code != http.StatusInsufficientStorage || json.Unmarshal(body, &pr) != nil {
		t.Fatalf("provide on a full disk: %d %s, want 507", code, body)
	}
	if pr.Error != api.MsgNoSpace || len(pr.Results) != 2 || !strings.Contains(pr.Results[1].Error, "not enough free disk space") {
		t.Fatalf("provide on a full disk: %s", body)
	}
	// Reads are served.
	if code, body := f.do(t, "GET", "/v1/records?key="+stored.String(), ""); code != http.StatusOK {
		t.Fatalf("records on a full disk: %d %s", code, body)
	}
	if code, body := f.do(t, "GET", "/healthz", ""); code != http.StatusOK || !strings.Contains(string(body), "writes refused") {
		t.Fatalf("healthz on a full disk: %d %s", code, body)
	}

	f.fs.set(func(f *faultStore) { f.noSpace, f.health = false, store.Health{} })
	if code, body := f.do(t, "POST", "/v1/provide", `{"keys":["`+c1.String()+`"]}`); code != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("provide after space came back: %d %s", code, body)
	}
}

// TestPutIPNSNoSpace: PUT /routing/v1/ipns/… that meets a full disk is 507,
// not boxo's 500.
func TestPutIPNSNoSpace(t *testing.T) {
	f := setupFaults(t, func(n *fakeNode) api.Node { return noSpaceNode{n} })
	sk, pid := newKey(t)
	name := ipns.NameFromPeer(pid)
	p, _ := path.NewPath("/ipfs/" + newCid(t, "v").String())
	rec, err := ipns.NewRecord(sk, p, 1, time.Now().Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ipns.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	code, body := f.do(t, "PUT", "/routing/v1/ipns/"+name.String(), string(raw), "Content-Type", "application/vnd.ipfs.ipns-record")
	if code != http.StatusInsufficientStorage || !strings.Contains(string(body), api.MsgNoSpace) {
		t.Fatalf("PUT ipns on a full disk: %d %s, want 507 and the message", code, body)
	}
}

// TestCorruptRead: a read that meets damage answers 500 with the error.
func TestCorruptRead(t *testing.T) {
	f := setupFaults(t, nil)
	f.fs.set(func(f *faultStore) { f.corrupt = true })
	for _, key := range []string{newCid(t, "x").String(), "/pk/x"} {
		code, body := f.do(t, "GET", "/v1/records?key="+key, "")
		if code != http.StatusInternalServerError || !strings.Contains(string(body), "damaged") || !strings.Contains(string(body), "000024.sst") {
			t.Errorf("records of %s on damaged data: %d %s, want 500 and the cause", key, code, body)
		}
	}
}

// TestHealthDegraded: a store reporting a problem keeps /healthz at 200, says
// "degraded" with the problems one a line and in a header, and /v1/stats
// shows them; a healthy one says "ok".
func TestHealthDegraded(t *testing.T) {
	f := setupFaults(t, nil)
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp, b.String()
	}
	resp, body := get("/healthz")
	if resp.StatusCode != 200 || body != "ok\n" || resp.Header.Get(api.HealthHeader) != "ok" {
		t.Fatalf("healthy: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	_, body = get("/v1/stats")
	var st map[string]any
	if json.Unmarshal([]byte(body), &st) != nil || st["degraded"] != false || fmt.Sprint(st["health"]) != "map[]" {
		t.Fatalf("healthy stats: %s", body)
	}

	problems := []string{"damaged file 000024.sst: reads of the keys it holds fail", "write-ahead log 000009.log damaged: 1549 writes lost"}
	f.fs.set(func(f *faultStore) {
		f.health = store.Health{Problems: problems, CorruptFiles: 1, CorruptReads: 3, LostLogRecords: 1549}
	})
	resp, body = get("/healthz")
	if resp.StatusCode != 200 || body != "degraded\n"+problems[0]+"\n"+problems[1]+"\n" || resp.Header.Get(api.HealthHeader) != "degraded" {
		t.Fatalf("degraded: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	_, body = get("/v1/stats")
	var sr api.StatsResponse
	if err := json.Unmarshal([]byte(body), &sr); err != nil {
		t.Fatal(err)
	}
	if !sr.Degraded || sr.Health == nil || len(sr.Health.Problems) != 2 || sr.Health.CorruptFiles != 1 ||
		sr.Health.CorruptReads != 3 || sr.Health.LostLogRecords != 1549 || sr.Health.NoSpace {
		t.Fatalf("degraded stats: %s", body)
	}
	if strings.Contains(body, "no_space") || strings.Contains(body, "failed") {
		t.Errorf("zero health fields are shown: %s", body)
	}
}

// TestStatsWithoutHealth: a backend that reports no health has no health
// object in /v1/stats, and is not degraded.
func TestStatsWithoutHealth(t *testing.T) {
	f := setup(t, "")
	code, body := f.do(t, "GET", "/v1/stats", "")
	var st map[string]any
	if code != 200 || json.Unmarshal(body, &st) != nil || st["degraded"] != false {
		t.Fatalf("/v1/stats: %d %s", code, body)
	}
	if _, ok := st["health"]; ok {
		t.Fatalf("/v1/stats of a memstore has a health object: %s", body)
	}
}
