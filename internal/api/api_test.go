package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/boxo/routing/http/client"
	"github.com/ipfs/boxo/routing/http/types"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	sk, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPublicKey(pub)
	return sk, id
}

func newCid(t *testing.T, s string) cid.Cid {
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// fakeNode stands in for the DHT: it provides into the store and finds what
// was put in remote.
type fakeNode struct {
	id     peer.ID
	s      store.Store
	mu     sync.Mutex
	remote map[string][]peer.AddrInfo // key -> providers elsewhere in the DHT
	values map[string][]byte
	peers  map[peer.ID]peer.AddrInfo
}

func (f *fakeNode) ID() peer.ID { return f.id }
func (f *fakeNode) Addrs() []ma.Multiaddr {
	return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}
}
func (f *fakeNode) RoutingTableSize() int { return 7 }
func (f *fakeNode) Mode() (string, bool)  { return "auto", false }
func (f *fakeNode) Provide(ctx context.Context, key []byte) (int, error) {
	err := f.s.AddProviders(ctx, store.ProviderRecord{Key: key, Provider: f.id, Addrs: f.Addrs(), Expires: time.Now().Add(time.Hour)})
	return 0, err
}
func (f *fakeNode) FindProviders(ctx context.Context, key []byte, count int) <-chan peer.AddrInfo {
	f.mu.Lock()
	found := f.remote[string(key)]
	f.mu.Unlock()
	ch := make(chan peer.AddrInfo, len(found))
	for _, ai := range found {
		ch <- ai
	}
	close(ch)
	return ch
}
func (f *fakeNode) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	if ai, ok := f.peers[id]; ok {
		return ai, nil
	}
	return peer.AddrInfo{}, routing.ErrNotFound
}
func (f *fakeNode) GetValue(ctx context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.values[key]; ok {
		return v, nil
	}
	return nil, routing.ErrNotFound
}
func (f *fakeNode) PutValue(ctx context.Context, key string, value []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values[key] = value
	return nil
}
func (f *fakeNode) GetClosestPeers(ctx context.Context, key []byte) ([]peer.ID, error) {
	return []peer.ID{f.id}, nil
}

type fixture struct {
	srv  *httptest.Server
	node *fakeNode
	s    store.Store
}

func setup(t *testing.T, token string) *fixture {
	t.Helper()
	s := memstore.New(store.Options{})
	t.Cleanup(func() { s.Close() })
	_, id := newKey(t)
	node := &fakeNode{id: id, s: s, remote: map[string][]peer.AddrInfo{}, values: map[string][]byte{}, peers: map[peer.ID]peer.AddrInfo{}}
	reg := prometheus.NewRegistry()
	h := api.New(api.Config{Store: s, Node: node, Token: token, Gatherer: reg, Registerer: reg,
		Jobs: func() any { return map[string]string{"reprovide": "idle"} }})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, node: node, s: s}
}

func (f *fixture) do(t *testing.T, method, path, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAdminEndpoints(t *testing.T) {
	f := setup(t, "")
	code, body := f.do(t, "GET", "/v1/id", "")
	var id api.IDResponse
	if code != 200 || json.Unmarshal(body, &id) != nil || id.ID != f.node.id.String() ||
		len(id.Addrs) != 1 || !strings.HasSuffix(id.Addrs[0], "/p2p/"+f.node.id.String()) {
		t.Fatalf("/v1/id: %d %s", code, body)
	}

	c1, c2 := newCid(t, "one"), newCid(t, "two")
	code, body = f.do(t, "POST", "/v1/provide", `{"keys":["`+c1.String()+`","`+c2.String()+`"]}`)
	var pr api.ProvideResponse
	if code != 200 || json.Unmarshal(body, &pr) != nil || len(pr.Results) != 2 || pr.Results[0].Error != "" {
		t.Fatalf("/v1/provide: %d %s", code, body)
	}
	if got, _ := f.s.Providers(context.Background(), c2.Hash(), 0); len(got) != 1 || got[0].Provider != f.node.id {
		t.Fatalf("provide did not store the record: %v", got)
	}

	code, body = f.do(t, "GET", "/v1/stats", "")
	var st map[string]any
	if code != 200 || json.Unmarshal(body, &st) != nil || st["provider_records"] != float64(2) ||
		st["value_records"] != float64(0) || st["routing_table_size"] != float64(7) || st["jobs"] == nil {
		t.Fatalf("/v1/stats: %d %s", code, body)
	}

	// Paging through both records one at a time.
	var seen []string
	after := ""
	for range 3 {
		code, body = f.do(t, "GET", "/v1/scan?kind=providers&limit=1&after="+after, "")
		var sr api.ScanResponse
		if code != 200 || json.Unmarshal(body, &sr) != nil {
			t.Fatalf("/v1/scan: %d %s", code, body)
		}
		for _, r := range sr.Records {
			seen = append(seen, string(r.Key))
		}
		if sr.Next == "" {
			break
		}
		after = sr.Next
	}
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Fatalf("scan pages gave %d records", len(seen))
	}

	if code, body = f.do(t, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body = f.do(t, "GET", "/metrics", ""); code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
}

func TestBadRequests(t *testing.T) {
	f := setup(t, "")
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/provide", `{"keys":["not-a-cid"]}`, 400},
		{"POST", "/v1/provide", `{"keys":[]}`, 400},
		{"POST", "/v1/provide", `{"unknown":1}`, 400},
		{"POST", "/v1/provide", `{"keys":["` + strings.Repeat("a", api.MaxBody) + `"]}`, 413},
		{"GET", "/v1/scan?after=!!!", "", 400},
		{"GET", "/v1/scan?after=AAAA", "", 400},
		{"GET", "/v1/scan?kind=bogus", "", 400},
		{"GET", "/v1/scan?limit=0", "", 400},
		{"GET", "/routing/v1/providers/not-a-cid", "", 400},
	}
	for _, c := range cases {
		code, body := f.do(t, c.method, c.path, c.body)
		if code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.want)
		}
		if c.want < 500 && !bytes.Contains(body, []byte(" ")) {
			t.Errorf("%s %s: no message in %q", c.method, c.path, body)
		}
	}
}

func TestTokenGuardsMutations(t *testing.T) {
	f := setup(t, "s3cret")
	c := newCid(t, "x").String()
	if code, _ := f.do(t, "POST", "/v1/provide", `{"keys":["`+c+`"]}`); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := f.do(t, "POST", "/v1/provide", `{"keys":["`+c+`"]}`, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code, body := f.do(t, "POST", "/v1/provide", `{"keys":["`+c+`"]}`, "Authorization", "Bearer s3cret"); code != 200 {
		t.Fatalf("right token: %d %s", code, body)
	}
	// Reads need no token.
	if code, _ := f.do(t, "GET", "/v1/stats", ""); code != 200 {
		t.Fatalf("stats with a token configured: %d", code)
	}
}

func TestDelegatedRoutingThroughBoxoClient(t *testing.T) {
	f := setup(t, "")
	ctx := context.Background()
	c := newCid(t, "content")
	// One provider held locally (with addresses), one found in the DHT, and a
	// duplicate of the local one from the DHT.
	_, local := newKey(t)
	_, remote := newKey(t)
	localAddr := ma.StringCast("/ip4/192.0.2.7/tcp/4001")
	if err := f.s.AddProviders(ctx, store.ProviderRecord{Key: c.Hash(), Provider: local, Addrs: []ma.Multiaddr{localAddr}, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.node.remote[string(c.Hash())] = []peer.AddrInfo{
		{ID: remote, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.8/tcp/4001")}},
		{ID: local, Addrs: []ma.Multiaddr{localAddr}},
	}
	cl, err := client.New(f.srv.URL, client.WithDisabledLocalFiltering(true))
	if err != nil {
		t.Fatal(err)
	}
	it, err := cl.FindProviders(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	got := map[peer.ID]int{}
	for it.Next() {
		res := it.Val()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		pr, ok := res.Val.(*types.PeerRecord)
		if !ok {
			t.Fatalf("record of type %T", res.Val)
		}
		got[*pr.ID] = len(pr.Addrs)
	}
	it.Close()
	if len(got) != 2 || got[local] != 1 || got[remote] != 1 {
		t.Fatalf("providers %v, want local and remote once each with their addresses", got)
	}

	// Peers.
	_, known := newKey(t)
	f.node.peers[known] = peer.AddrInfo{ID: known, Addrs: []ma.Multiaddr{localAddr}}
	pit, err := cl.FindPeers(ctx, known)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for pit.Next() {
		if pit.Val().Err == nil && *pit.Val().Val.ID == known {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("FindPeers found %d", n)
	}

	// IPNS: put a signed record, get it back; a record for another name is refused.
	sk, pid := newKey(t)
	name := ipns.NameFromPeer(pid)
	p, _ := path.NewPath("/ipfs/" + c.String())
	rec, err := ipns.NewRecord(sk, p, 1, time.Now().Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.PutIPNS(ctx, name, rec); err != nil {
		t.Fatal(err)
	}
	back, err := cl.GetIPNS(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := back.Value(); v.String() != p.String() {
		t.Fatalf("IPNS value %v, want %v", v, p)
	}
	_, otherID := newKey(t)
	if err := cl.PutIPNS(ctx, ipns.NameFromPeer(otherID), rec); err == nil {
		t.Fatal("a record signed for another name was accepted")
	}
	if _, err := cl.GetIPNS(ctx, ipns.NameFromPeer(otherID)); !errors.Is(err, routing.ErrNotFound) {
		t.Fatalf("GetIPNS of an unknown name: %v", err)
	}
}

// A body that does not arrive within the server's ReadTimeout ends the
// connection without an answer.
func TestSlowBodyClosedWithoutAnswer(t *testing.T) {
	s := memstore.New(store.Options{})
	t.Cleanup(func() { s.Close() })
	_, id := newKey(t)
	node := &fakeNode{id: id, s: s}
	srv := httptest.NewUnstartedServer(api.New(api.Config{Store: s, Node: node, Gatherer: prometheus.NewRegistry()}))
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/provide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"keys\": [\"b")
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v; want the connection closed without an answer", b, err)
	}
}

// An IPNS PUT over MaxBody is 413, as every other body over it, whether its
// length is declared or not (boxo's server would answer 400).
func TestOversizedIPNSPutIs413(t *testing.T) {
	f := setup(t, "")
	_, id := newKey(t)
	p := "/routing/v1/ipns/" + ipns.NameFromPeer(id).String()
	big := strings.Repeat("x", 2*api.MaxBody)
	if code, body := f.do(t, "PUT", p, big, "Content-Type", "application/vnd.ipfs.ipns-record"); code != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT with a declared length over MaxBody: %d %s", code, body)
	}
	// No declared length: the limit is met while reading.
	req, err := http.NewRequest("PUT", f.srv.URL+p, io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/vnd.ipfs.ipns-record")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.ContentLength != 0 && req.ContentLength != -1 {
		t.Fatalf("the request declared its length %d: the test proves nothing", req.ContentLength)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked PUT over MaxBody: %d", resp.StatusCode)
	}
}
