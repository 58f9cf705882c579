// Package api is the HTTP interface of a running kadstore node: the Delegated
// Routing V1 API that IPFS tools speak (served by boxo's routing/http server),
// the admin endpoints under /v1/, Prometheus metrics at /metrics and /healthz.
//
// Lookups answer from the local store first and then from the DHT. Mutating
// endpoints (POST /v1/provide, PUT /routing/v1/ipns/…) accept requests only
// from loopback addresses unless a token is configured; with a token, every
// mutating request must carry it as "Authorization: Bearer <token>".
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kadstore/kadstore/internal/keytext"
	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store"
)

// Node is what the API needs from the DHT node.
type Node interface {
	// ID is the node's peer ID.
	ID() peer.ID
	// Addrs are the node's listen addresses, without /p2p.
	Addrs() []ma.Multiaddr
	// RoutingTableSize is the number of peers in the routing table.
	RoutingTableSize() int
	// Mode is the DHT mode the node was started in ("server", "client" or
	// "auto") and whether it serves the DHT now.
	Mode() (mode string, serving bool)
	// Provide stores key as a provider record of the node's own and announces
	// it, returning how many peers accepted the announcement. With no peers
	// reachable the record is still stored and Provide returns 0, nil.
	Provide(ctx context.Context, key []byte) (int, error)
	// FindProviders streams up to count providers of key; the channel closes
	// when the lookup ends.
	FindProviders(ctx context.Context, key []byte, count int) <-chan peer.AddrInfo
	// FindPeer looks up a peer's addresses.
	FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error)
	// GetValue and PutValue read and write value records (validated).
	GetValue(ctx context.Context, key string) ([]byte, error)
	PutValue(ctx context.Context, key string, value []byte) error
	// GetClosestPeers returns the closest peers to key known to the DHT.
	GetClosestPeers(ctx context.Context, key []byte) ([]peer.ID, error)
}

// Config configures the handler.
type Config struct {
	Store store.Store
	Node  Node
	// Token, if set, is required (as a bearer token) on mutating requests.
	Token string
	// Gatherer serves /metrics; default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Registerer receives the delegated routing server's metrics; nil for none.
	Registerer prometheus.Registerer
	// Jobs reports the state of background jobs for /v1/stats; may be nil.
	Jobs func() any
	// Logger; default slog.Default().
	Logger *slog.Logger
	// RoutingTimeout bounds one delegated routing lookup; default 30 s.
	RoutingTimeout time.Duration
}

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// MaxProvideKeys is the most keys one POST /v1/provide may name.
const MaxProvideKeys = 10_000

// New returns the HTTP handler of the API.
func New(cfg Config) http.Handler {
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RoutingTimeout == 0 {
		cfg.RoutingTimeout = 30 * time.Second
	}
	a := &api{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /v1/id", a.id)
	mux.HandleFunc("GET /v1/stats", a.stats)
	mux.HandleFunc("GET /v1/scan", a.scan)
	mux.HandleFunc("GET /v1/records", a.records)
	mux.Handle("POST /v1/provide", a.mutating(http.HandlerFunc(a.provide)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	routing := newRoutingHandler(&router{api: a}, cfg)
	mux.Handle("/routing/v1/", a.guardRouting(routing))
	return a.recoverer(mux, newPanicCounter(cfg.Registerer, cfg.Logger))
}

type api struct{ cfg Config }

// httpError is a JSON error answer.
type httpError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, httpError{Error: fmt.Sprintf(format, args...)})
}

// healthz answers 200 "ok" while the store answers; 200 "degraded" and the
// store's problems, one a line, while the store reports a problem but the
// node still serves (a damaged file, a full disk: see store.Health); and 503
// when the store does not answer (closed, unreachable). The HealthHeader
// header says which.
func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	if _, err := a.cfg.Store.Stats(r.Context()); err != nil {
		w.Header().Set(HealthHeader, "unavailable")
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h, _ := a.health(); h.Degraded() {
		w.Header().Set(HealthHeader, "degraded")
		var b strings.Builder
		b.WriteString("degraded\n")
		for _, p := range h.Problems {
			b.WriteString(strings.ReplaceAll(p, "\n", " "))
			b.WriteByte('\n')
		}
		_, _ = w.Write([]byte(b.String()))
		return
	}
	w.Header().Set(HealthHeader, "ok")
	_, _ = w.Write([]byte("ok\n"))
}

// IDResponse is the answer of GET /v1/id.
type IDResponse struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

func (a *api) id(w http.ResponseWriter, r *http.Request) {
	self := a.cfg.Node.ID()
	resp := IDResponse{ID: self.String(), Addrs: []string{}}
	for _, addr := range a.cfg.Node.Addrs() {
		resp.Addrs = append(resp.Addrs, addr.String()+"/p2p/"+self.String())
	}
	writeJSON(w, http.StatusOK, resp)
}

// StatsResponse is the answer of GET /v1/stats.
type StatsResponse struct {
	ProviderRecords  int64 `json:"provider_records"`
	ValueRecords     int64 `json:"value_records"`
	DiskBytes        int64 `json:"disk_bytes"`
	RoutingTableSize int   `json:"routing_table_size"`
	Jobs             any   `json:"jobs,omitempty"`
	// Mode is the DHT mode ("server", "client", "auto"); Serving tells
	// whether the node serves the DHT now (in auto mode, only while publicly
	// reachable).
	Mode    string `json:"mode"`
	Serving bool   `json:"serving"`
	// Degraded is set while the store reports a problem (Health.Problems).
	Degraded bool `json:"degraded"`
	// Health is the store's account of its storage: damage met, writes
	// refused for want of space; absent for a backend that does not report
	// one (memory, PostgreSQL), and {} for a healthy one.
	Health *store.Health `json:"health,omitempty"`
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	st, err := a.cfg.Store.Stats(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	resp := StatsResponse{
		ProviderRecords:  st.ProviderRecords,
		ValueRecords:     st.ValueRecords,
		DiskBytes:        st.DiskBytes,
		RoutingTableSize: a.cfg.Node.RoutingTableSize(),
	}
	resp.Mode, resp.Serving = a.cfg.Node.Mode()
	if a.cfg.Jobs != nil {
		resp.Jobs = a.cfg.Jobs()
	}
	if h, ok := a.health(); ok {
		resp.Health, resp.Degraded = &h, h.Degraded()
	}
	writeJSON(w, http.StatusOK, resp)
}

// ScanResponse is the answer of GET /v1/scan: one page of records and the
// cursor of the next page ("" when the scan is complete).
type ScanResponse struct {
	Records []ndjson.Line `json:"records"`
	Next    string        `json:"next"`
	// Skipped counts the records (or damaged ranges) the page stepped over
	// because they could not be read (store.Page.Skipped).
	Skipped int `json:"skipped,omitempty"`
}

// EncodeCursor and DecodeCursor give cursors their URL form.
func EncodeCursor(c store.Cursor) string { return base64.RawURLEncoding.EncodeToString(c) }

// DecodeCursor parses the URL form of a cursor.
func DecodeCursor(s string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrBadCursor, err)
	}
	return b, nil
}

func (a *api) scan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := store.ScanOptions{Limit: 100}
	switch q.Get("kind") {
	case "providers", "":
		opts.Kind = store.Providers
	case "values":
		opts.Kind = store.Values
	default:
		writeError(w, http.StatusBadRequest, "kind must be providers or values, not %q", q.Get("kind"))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > 10_000 {
			writeError(w, http.StatusBadRequest, "limit must be a number from 1 to 10000, not %q", s)
			return
		}
		opts.Limit = n
	}
	if s := q.Get("after"); s != "" {
		c, err := DecodeCursor(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "after: %v", err)
			return
		}
		opts.After = c
	}
	if s := q.Get("peer"); s != "" {
		id, err := peer.Decode(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "peer: %v", err)
			return
		}
		opts.Peer = id
	}
	page, err := a.cfg.Store.Scan(r.Context(), opts)
	switch {
	case errors.Is(err, store.ErrBadCursor), errors.Is(err, store.ErrBadScan):
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	case err != nil:
		writeStoreError(w, err)
		return
	}
	resp := ScanResponse{Records: make([]ndjson.Line, 0, page.Len()), Skipped: page.Skipped}
	for _, p := range page.Providers {
		resp.Records = append(resp.Records, ndjson.FromProvider(p))
	}
	for _, v := range page.Values {
		resp.Records = append(resp.Records, ndjson.FromValue(v))
	}
	if page.Next != nil {
		resp.Next = EncodeCursor(page.Next)
	}
	writeJSON(w, http.StatusOK, resp)
}

// RecordsResponse is the answer of GET /v1/records?key=K: what the local
// store holds for K, a CID (its providers) or a value key such as /ipns/….
type RecordsResponse struct {
	Providers []ndjson.Line `json:"providers,omitempty"`
	Value     *ndjson.Line  `json:"value,omitempty"`
}

// ParseKey turns the printed form of a record key into the store's key
// (keytext.Parse): a CID names its multihash (provider records); a key that
// starts with "/" is a value record key (/pk/…, /ipns/…).
func ParseKey(s string) (key []byte, isValue bool, err error) { return keytext.Parse(s) }

func (a *api) records(w http.ResponseWriter, r *http.Request) {
	key, isValue, err := ParseKey(r.URL.Query().Get("key"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "key: %v", err)
		return
	}
	var resp RecordsResponse
	if isValue {
		v, err := a.cfg.Store.GetValue(r.Context(), key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "no value record for this key")
			return
		case err != nil:
			writeStoreError(w, err)
			return
		}
		l := ndjson.FromValue(v)
		resp.Value = &l
	} else {
		provs, err := a.cfg.Store.Providers(r.Context(), key, 0)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		for _, p := range provs {
			resp.Providers = append(resp.Providers, ndjson.FromProvider(p))
		}
		if len(resp.Providers) == 0 {
			writeError(w, http.StatusNotFound, "no provider records for this key")
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// ProvideRequest is the body of POST /v1/provide.
type ProvideRequest struct {
	Keys []string `json:"keys"`
}

// ProvideResult reports one key of a provide request.
type ProvideResult struct {
	Key   string `json:"key"`
	Peers int    `json:"peers"`
	Error string `json:"error,omitempty"`
}

// ProvideResponse is the answer of POST /v1/provide: 200 with a result per
// key, each with its own error if it failed. When every key failed for the
// same storage fault the whole request failed: 507 Insufficient Storage for
// a full disk (store.ErrNoSpace), 503 for unavailable storage, with Error
// set and the results as well.
type ProvideResponse struct {
	Results []ProvideResult `json:"results"`
	Error   string          `json:"error,omitempty"`
}

func (a *api) provide(w http.ResponseWriter, r *http.Request) {
	var req ProvideRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Keys) == 0 || len(req.Keys) > MaxProvideKeys {
		writeError(w, http.StatusBadRequest, "keys: want 1 to %d CIDs, got %d", MaxProvideKeys, len(req.Keys))
		return
	}
	cids := make([]cid.Cid, len(req.Keys))
	for i, s := range req.Keys {
		c, err := cid.Decode(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "keys[%d]: bad CID %q: %v", i, s, err)
			return
		}
		cids[i] = c
	}
	resp := ProvideResponse{Results: make([]ProvideResult, len(cids))}
	// whole is the status every key's failure calls for so far: 507 or 503
	// while each key failed for the same storage fault, 200 otherwise.
	whole, msg := 0, ""
	// Storage faults are logged once a request, not once a key.
	var faults int
	var lastFault error
	for i, c := range cids {
		n, err := a.cfg.Node.Provide(r.Context(), c.Hash())
		resp.Results[i] = ProvideResult{Key: c.String(), Peers: n}
		if err == nil {
			whole = http.StatusOK
			continue
		}
		resp.Results[i].Error = err.Error()
		code, m := storeStatus(err)
		if errors.Is(err, store.ErrNoSpace) || errors.Is(err, store.ErrUnavailable) {
			faults, lastFault = faults+1, err
		} else {
			code = http.StatusOK
			a.cfg.Logger.Warn("provide failed", "key", c, "err", err)
		}
		switch {
		case whole == 0:
			whole, msg = code, m
		case whole != code:
			whole = http.StatusOK
		}
	}
	if faults > 0 {
		a.cfg.Logger.Warn("provide: the store refused keys", "keys", faults, "of", len(cids), "err", lastFault)
	}
	if whole != http.StatusOK {
		resp.Error = msg
		writeJSON(w, whole, resp)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBody)
			return false
		}
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			// The body did not arrive within the server's ReadTimeout: close
			// the connection without an answer, as net/http does when the
			// header is late, rather than hold it while a client that
			// trickles its body may not read an answer either.
			panic(http.ErrAbortHandler)
		}
		writeError(w, http.StatusBadRequest, "body: %v", err)
		return false
	}
	return true
}

// mutating wraps a handler that changes state with the access rule.
func (a *api) mutating(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allowed(r) {
			if a.cfg.Token != "" {
				writeError(w, http.StatusUnauthorized, "this endpoint needs the API token as a bearer token")
			} else {
				writeError(w, http.StatusForbidden, "this endpoint only answers loopback clients unless the node has an API token (--api-token)")
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *api) allowed(r *http.Request) bool {
	if a.cfg.Token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) == 1
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guardRouting applies the access rule to the mutating routing endpoints and
// caps request bodies: MaxBody, and ipns.MaxRecordSize for an IPNS record,
// beyond which boxo's server would read a truncated record and answer 400.
// A body over its cap is 413, whether its length was declared or not.
func (a *api) guardRouting(h http.Handler) http.Handler {
	// The access rule first: a client that may not write cannot make the
	// node read its body.
	m := a.mutating(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(MaxBody)
		if strings.HasPrefix(r.URL.Path, "/routing/v1/ipns/") {
			limit = int64(ipns.MaxRecordSize)
		}
		if r.ContentLength > limit {
			writeError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
			return
		}
		if r.Body != nil {
			b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
			if err != nil {
				writeError(w, http.StatusBadRequest, "body: %v", err)
				return
			}
			if int64(len(b)) > limit {
				writeError(w, http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		h.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			h.ServeHTTP(w, r)
			return
		}
		withStatusHint(m, w, r)
	})
}
