package main_test

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/internal/testkit"
)

type lockedBuffer = testkit.SyncBuffer

func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")
}

// A node whose bootstrap peer is down at start warns, naming the peer, and
// joins once the peer comes up; /v1/stats shows its mode. The second node
// runs with every network flag set, so they are parsed and applied.
func TestNodeJoinsALateBootstrapPeer(t *testing.T) {
	bootDir := filepath.Join(t.TempDir(), "boot")
	listen := "/ip4/127.0.0.1/tcp/" + freeTCPPort(t)
	boot := startNode(t, bootDir, "--listen", listen, "--no-jobs")
	bootAddr := listen + "/p2p/" + boot.id
	if code := boot.stop(t); code != 0 {
		t.Fatalf("bootstrap node exit %d", code)
	}

	n := startNode(t, filepath.Join(t.TempDir(), "late"), "--bootstrap", bootAddr, "--no-jobs",
		"--peer-write-rate", "500", "--peer-write-burst", "5000", "--max-records-per-provider", "1000",
		"--allow-private-addrs", "--conns-low", "50", "--conns-high", "100", "--api-max-conns", "64")
	p2ptest.WaitUntil(t, 60*time.Second, "a bootstrap warning", func() bool {
		s := n.stderr.String()
		return strings.Contains(s, "bootstrap failed") && strings.Contains(s, boot.id)
	})
	stats := func() (rt float64, mode string, serving bool) {
		code, body := httpDo(t, "GET", n.api+"/v1/stats", "")
		var st struct {
			RT      float64 `json:"routing_table_size"`
			Mode    string  `json:"mode"`
			Serving bool    `json:"serving"`
		}
		if code != 200 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("/v1/stats: %d %s", code, body)
		}
		return st.RT, st.Mode, st.Serving
	}
	if rt, mode, serving := stats(); rt != 0 || mode != "server" || !serving {
		t.Fatalf("stats before the peer is up: rt %v mode %q serving %v", rt, mode, serving)
	}

	startNode(t, bootDir, "--listen", listen, "--no-jobs")
	p2ptest.WaitUntil(t, 90*time.Second, "the node to join", func() bool { rt, _, _ := stats(); return rt == 1 })
}
