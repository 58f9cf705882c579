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
	"strings"
	"time"

	"github.com/kadstore/kadstore/internal/datadir"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// target is where the inspection tools read: a running node's API, or the
// store of a data directory that no node holds. With --api the tool asks
// that node; otherwise it takes the data directory's lock and reads the
// store, or, when a node holds the directory, asks the API the node
// published there (internal/datadir). Either way the command works the same.
type target struct {
	api  string
	data string
	lock *datadir.Lock
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.api, "api", "", "address of a running node's API (host:port or URL); by default the API of the node running on --data, if one is")
	fs.StringVar(&t.data, "data", datadir.Default, "data directory: its store, or the API of the node running on it")
}

// resolve finds what to read: the --api node, the node running on --data,
// or --data's store, whose lock it then holds until close.
func (t *target) resolve() error {
	if t.api != "" {
		return nil
	}
	lock, u, err := datadir.New(t.data).LockOrAPI()
	if err != nil {
		return err
	}
	t.lock, t.api = lock, u
	return nil
}

// resolveRunning finds the node to ask, for the commands that need a
// running node: the --api node, or the node running on --data.
func (t *target) resolveRunning() error {
	if err := t.resolve(); err != nil {
		return err
	}
	if t.lock != nil {
		t.close()
		return fmt.Errorf("no node runs on %s: start one (kadstore node --data %s), or give --api", t.data, t.data)
	}
	return nil
}

// close releases the data directory's lock, if resolve took it.
func (t *target) close() {
	_ = t.lock.Unlock()
	t.lock = nil
}

// useAPI reports whether the tool talks to a running node.
func (t *target) useAPI() bool { return t.api != "" }

func (t *target) baseURL() string {
	if strings.HasPrefix(t.api, "http://") || strings.HasPrefix(t.api, "https://") {
		return strings.TrimSuffix(t.api, "/")
	}
	return "http://" + t.api
}

// openStore opens the store of the data directory resolve locked, for
// reading only.
func (t *target) openStore() (store.Store, error) {
	if t.lock == nil {
		return nil, errors.New("internal error: the data directory is not locked")
	}
	s, err := t.lock.OpenStore(pebblestore.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	return s, nil
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
