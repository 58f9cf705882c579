package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/internal/p2ptest"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pebblestore"
)

// The node killed with SIGKILL while four peers send it ADD_PROVIDERs loses
// none of the records it had accepted with --write-behind 0, and at most
// 2×1024 (the write-behind's bound) with the default. A peer knows a record
// was accepted once the node answered a PING sent after it on the same
// stream: the node handles a stream's requests in order. Each round logs
// what the kill lost: the measured loss window. A last round stops the node
// with SIGTERM under the same load, which must lose nothing.
func TestKillNineUnderPeerLoad(t *testing.T) {
	dir := t.TempDir()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	const rounds, peers, perPing = 7, 4, 50
	var next atomic.Int64
	for round := range rounds {
		writeBehind := "1024"
		bound := 2 * 1024
		if round%2 == 1 {
			writeBehind, bound = "0", 0
		}
		n := startNode(t, dir, "--write-behind", writeBehind, "--peer-write-rate", "-1")
		target, err := peer.AddrInfoFromString(n.addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		killAt := int64(2000 + rng.IntN(6000))
		var (
			mu        sync.Mutex
			confirmed = map[peer.ID][][]byte{} // keys each peer had accepted
			total     atomic.Int64
			wg        sync.WaitGroup
		)
		// The last round ends with SIGTERM instead: the node must commit
		// every record it accepted before it closes the store.
		sig := syscall.SIGKILL
		if round == rounds-1 {
			sig, writeBehind, bound = syscall.SIGTERM, "1024, SIGTERM", 0
		}
		kill, killed := n.killer(sig)
		// Every peer connects before any sends: the kill may come early.
		hosts := make([]host.Host, peers)
		for i := range hosts {
			hosts[i] = p2ptest.NewHost(t)
			if err := hosts[i].Connect(context.Background(), *target); err != nil {
				t.Fatalf("round %d, peer %d: %v\nnode:\n%s", round, i, err, n.stderr)
			}
		}
		for _, h := range hosts {
			wg.Go(func() {
				defer kill() // the node is gone, or a peer failed: stop all
				err := pipeline(h, target.ID, perPing, killed, func() [][]byte {
					keys := make([][]byte, perPing)
					for i := range keys {
						keys[i] = testCID(t, fmt.Sprintf("peer-load-%d", next.Add(1))).Hash()
					}
					return keys
				}, func(keys [][]byte) bool {
					mu.Lock()
					confirmed[h.ID()] = append(confirmed[h.ID()], keys...)
					mu.Unlock()
					return total.Add(int64(len(keys))) < killAt
				})
				if err != nil && total.Load() < killAt {
					t.Logf("peer: %v", err)
				}
			})
		}
		wg.Wait()
		<-n.done
		if sig == syscall.SIGTERM && n.cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("round %d: exit %d after SIGTERM:\n%s", round, n.cmd.ProcessState.ExitCode(), n.stderr)
		}
		if total.Load() < killAt {
			t.Fatalf("round %d: a peer failed after %d records were accepted:\n%s", round, total.Load(), n.stderr)
		}

		s, err := pebblestore.Open(filepath.Join(dir, "store"), pebblestore.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		lost := 0
		for p, keys := range confirmed {
			for _, k := range keys {
				provs, err := s.Providers(context.Background(), k, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(provs, func(r store.ProviderRecord) bool { return r.Provider == p }) {
					lost++
				}
			}
		}
		s.Close()
		t.Logf("round %d: --write-behind %s: stopped after %d records accepted; %d of them lost", round, writeBehind, total.Load(), lost)
		if lost > bound {
			t.Fatalf("round %d: --write-behind %s lost %d accepted records, more than %d", round, writeBehind, lost, bound)
		}
	}
}

// pipeline sends batches of ADD_PROVIDERs (one a key, for h itself), each
// followed by a PING, on one stream without waiting for the answers, so the
// node always has requests to read; a second goroutine reads the PING
// answers and passes each answered batch to accepted: the node handles a
// stream's requests in order, so it had handled every ADD_PROVIDER before
// the PING. It stops when accepted returns false or stop is closed.
func pipeline(h host.Host, to peer.ID, window int, stop <-chan struct{}, keys func() [][]byte, accepted func([][]byte) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := h.NewStream(ctx, to, "/ipfs/kad/1.0.0")
	if err != nil {
		return err
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(time.Minute))
	self := &dhtpb.Message_Peer{Id: []byte(h.ID()), Addrs: [][]byte{addrBytes(h)}}
	sent := make(chan [][]byte, 8) // batches written, their PINGs not yet answered
	done := make(chan error, 1)
	go func() {
		r := pbio.NewDelimitedReader(s, 1<<20)
		for batch := range sent {
			var resp dhtpb.Message
			if err := r.ReadMsg(&resp); err != nil {
				done <- err
				return
			}
			if resp.Type != dhtpb.Message_PING {
				done <- fmt.Errorf("answer %v to a PING", resp.Type)
				return
			}
			if !accepted(batch) {
				done <- nil
				return
			}
		}
		done <- nil
	}()
	w := pbio.NewDelimitedWriter(s)
	for {
		batch := keys()
		for _, k := range batch {
			if err := w.WriteMsg(&dhtpb.Message{Type: dhtpb.Message_ADD_PROVIDER, Key: k, ProviderPeers: []*dhtpb.Message_Peer{self}}); err != nil {
				return err
			}
		}
		if err := w.WriteMsg(&dhtpb.Message{Type: dhtpb.Message_PING}); err != nil {
			return err
		}
		select {
		case sent <- batch:
		case err := <-done:
			return err
		case <-stop:
			return nil
		}
	}
}

func addrBytes(h host.Host) []byte {
	for _, a := range h.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			return a.Bytes()
		}
	}
	return h.Addrs()[0].Bytes()
}
