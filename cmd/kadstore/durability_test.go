package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/internal/api"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// The node killed with SIGKILL while four clients provide keys through
// POST /v1/provide loses none of the keys it acknowledged, with the default
// flags (no --sync; every third round with --sync), over ten kills and
// restarts on one data directory.
func TestKillNineUnderProvideLoad(t *testing.T) {
	dir := t.TempDir()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var (
		acked []string // CIDs acknowledged in all rounds
		self  peer.ID
		next  atomic.Int64
	)
	const rounds, clients, perRequest = 10, 4, 20
	for round := range rounds {
		var extra []string
		if round%3 == 2 {
			extra = append(extra, "--sync") // fsync mode: the same guarantee and more
		}
		n := startNode(t, dir, extra...)
		id, err := peer.Decode(n.id)
		if err != nil {
			t.Fatal(err)
		}
		if self != "" && id != self {
			t.Fatalf("round %d: peer ID changed from %s to %s", round, self, id)
		}
		self = id
		killAt := int64(100 + rng.IntN(2000))
		var (
			mu         sync.Mutex
			roundAcked int64
			wg         sync.WaitGroup
		)
		kill, killed := n.killer(syscall.SIGKILL)
		for range clients {
			wg.Go(func() {
				for {
					select {
					case <-killed:
						return
					default:
					}
					keys := make([]string, perRequest)
					for i := range keys {
						keys[i] = testCID(t, fmt.Sprintf("kill9-%d", next.Add(1))).String()
					}
					ok := provideKeys(n.api, keys)
					mu.Lock()
					acked = append(acked, ok...)
					roundAcked += int64(len(ok))
					enough := roundAcked >= killAt
					mu.Unlock()
					if enough {
						kill()
					}
					if len(ok) < len(keys) {
						// The node is gone (or refused): stop this client.
						kill()
						return
					}
				}
			})
		}
		wg.Wait()
		<-n.done
		if roundAcked < killAt {
			t.Fatalf("round %d: provide failed after %d acknowledged keys:\n%s", round, roundAcked, n.stderr)
		}

		s, err := pebblestore.Open(filepath.Join(dir, "store"), pebblestore.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		var missing []string
		for _, k := range acked {
			provs, err := s.Providers(context.Background(), mustCID(t, k).Hash(), 0)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range provs {
				found = found || p.Provider == self
			}
			if !found {
				missing = append(missing, k)
			}
		}
		s.Close()
		if len(missing) > 0 {
			t.Fatalf("round %d: %d of %d acknowledged keys lost after SIGKILL, first %v", round, len(missing), len(acked), missing[:min(3, len(missing))])
		}
		t.Logf("round %d: killed after %d keys acknowledged in the round; all %d present", round, roundAcked, len(acked))
	}
}

// provideKeys posts keys to /v1/provide and returns those the node
// acknowledged: a 200 answer whose result for the key has no error.
func provideKeys(apiURL string, keys []string) []string {
	body, _ := json.Marshal(api.ProvideRequest{Keys: keys})
	resp, err := http.Post(apiURL+"/v1/provide", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var pr api.ProvideResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		return nil
	}
	var ok []string
	for _, r := range pr.Results {
		if r.Error == "" {
			ok = append(ok, r.Key)
		}
	}
	return ok
}

func mustCID(t *testing.T, s string) cid.Cid {
	t.Helper()
	c, err := cid.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
