package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/identity"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// defaultDataDir is the data directory of the node and the tools when
// --data is not given.
const defaultDataDir = "./kadstore-data"

// target is where the inspection tools read: a running node's API (--api) or
// a data directory that no node holds (--data).
type target struct {
	api  string
	data string
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.api, "api", "", "address of a running node's API (host:port or URL)")
	fs.StringVar(&t.data, "data", "", "data directory of a stopped node (default ./kadstore-data when --api is not given)")
}

// useAPI reports whether the tool talks to a running node.
func (t *target) useAPI() bool { return t.api != "" }

func (t *target) baseURL() string {
	if strings.HasPrefix(t.api, "http://") || strings.HasPrefix(t.api, "https://") {
		return strings.TrimSuffix(t.api, "/")
	}
	return "http://" + t.api
}

// openStore opens the data directory's Pebble store; readOnly for tools that
// only read. A directory held by a running node gives a message saying so.
func (t *target) openStore(readOnly bool) (store.Store, error) {
	dir := t.data
	if dir == "" {
		dir = defaultDataDir
	}
	sdir := filepath.Join(dir, "store")
	if _, err := os.Stat(sdir); err != nil {
		if readOnly {
			return nil, fmt.Errorf("no store in %s: %w", dir, err)
		}
	}
	opts := pebblestore.Options{ReadOnly: readOnly}
	if !readOnly {
		// The node indexes its own records by peer; open with the same
		// index, or the store would drop it and the node rebuild it.
		key, _, err := identity.LoadOrCreate(filepath.Join(dir, identity.FileName))
		if err != nil {
			return nil, err
		}
		self, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, err
		}
		opts.IndexedPeers = []peer.ID{self}
	}
	s, err := pebblestore.Open(sdir, opts)
	if errors.Is(err, pebblestore.ErrLocked) {
		return nil, fmt.Errorf("%s is held by a running node: use --api to ask it instead (%w)", dir, err)
	}
	return s, err
}

// apiClient is a small client of the node's HTTP API.
var apiClient = &http.Client{Timeout: 5 * time.Minute}

// getJSON calls a GET endpoint and decodes its JSON answer into v.
func (t *target) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	u := t.baseURL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return doJSON(req, v)
}

// postJSON sends body as JSON and decodes the answer into v.
func (t *target) postJSON(ctx context.Context, path, token string, body, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.baseURL()+path, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return doJSON(req, v)
}

func doJSON(req *http.Request, v any) error {
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// parseWithArgs parses a command line with exactly n positional arguments,
// which may stand before or after the flags.
func parseWithArgs(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	var pos []string
	for len(args) > 0 && len(pos) < n && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	pos = append(pos, fs.Args()...)
	if len(pos) != n {
		fmt.Fprintf(fs.Output(), "want %d argument(s), got %d: %q\n", n, len(pos), pos)
		fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}
