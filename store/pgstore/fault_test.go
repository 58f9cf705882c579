package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/pgstore"
	"github.com/kadstore/kadstore/store/storetest"
)

// RestartEnv names the environment variable that lets TestServerRestart stop
// and start the PostgreSQL cluster (KADSTORE_TEST_PG_RESTART=1). ClusterEnv
// names the cluster, as "version name" (default "15 main").
const (
	RestartEnv = "KADSTORE_TEST_PG_RESTART"
	ClusterEnv = "KADSTORE_TEST_PG_CLUSTER"
)

// withParam returns dsn (a URL) with a query parameter set.
func withParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Skipf("%s is not a postgres:// URL: %v", DSNEnv, err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestUnreachable: a server that refuses connections gives ErrUnavailable.
func TestUnreachable(t *testing.T) {
	dsn := testDSN(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	u, err := url.Parse(dsn)
	if err != nil {
		t.Skip(err)
	}
	u.Host = addr
	_, err = pgstore.Open(t.Context(), u.String(), pgstore.Options{})
	if !errors.Is(err, pgstore.ErrUnavailable) {
		t.Errorf("Open of a closed port: %v, want ErrUnavailable", err)
	}
	// The pgx error is wrapped, not replaced: callers can still see why.
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Errorf("Open of a closed port: %v (%T) does not wrap the *pgconn.ConnectError", err, err)
	}
}

// TestConnectionsKilled: when the server ends every connection of the pool
// (as a restart or a failover does), the next calls reconnect and succeed,
// and nothing acknowledged is lost.
func TestConnectionsKilled(t *testing.T) {
	dsn := testDSN(t)
	app := uniqueSchema(t)
	clock := storetest.NewClock(storetest.Start)
	rng := storetest.NewRand(t)
	s := openSchema(t, withParam(t, dsn, "application_name", app), uniqueSchema(t), pgstore.Options{Options: store.Options{Now: clock.Now}})
	ctx := t.Context()
	var recs []store.ProviderRecord
	for range 20 {
		recs = append(recs, storetest.NewProviderRecord(rng, storetest.RandomKey(rng), storetest.RandomPeer(rng), clock.Now().Add(time.Hour)))
	}
	// Use several pooled connections, so several are idle when killed.
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Go(func() {
			if err := s.AddProviders(ctx, r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	err = admin.QueryRow(ctx, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed)
	if err != nil || killed == 0 {
		t.Fatalf("terminating the store's connections: %d, %v", killed, err)
	}
	for _, r := range recs {
		got, err := s.Providers(ctx, r.Key, 0)
		if err != nil {
			t.Fatalf("Providers after the connections were killed: %v", err)
		}
		if len(got) != 1 || !got[0].Equal(r) {
			t.Errorf("Providers after the connections were killed: %v, want %v", got, r)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.ProviderRecords != int64(len(recs)) {
		t.Errorf("Stats: %+v %v", st, err)
	}
}

// pgctl runs pg_ctlcluster on the test cluster.
func pgctl(t testing.TB, action string, args ...string) error {
	t.Helper()
	cluster := os.Getenv(ClusterEnv)
	if cluster == "" {
		cluster = "15 main"
	}
	argv := append(append(strings.Fields(cluster), action), args...)
	name := "pg_ctlcluster"
	if os.Geteuid() != 0 {
		argv, name = append([]string{"-n", name}, argv...), "sudo"
	}
	out, err := exec.Command(name, argv...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(argv, " "), err, out)
	}
	return nil
}

// TestServerRestart stops the PostgreSQL server in the middle of a write
// load, and starts it again. While it is down every call fails with
// ErrUnavailable; once it is back the same store serves again; and every
// write that returned nil is there.
func TestServerRestart(t *testing.T) {
	dsn := testDSN(t)
	if os.Getenv(RestartEnv) != "1" {
		t.Skipf("set %s=1 to let this test stop and start the PostgreSQL cluster %q", RestartEnv, os.Getenv(ClusterEnv))
	}
	clock := storetest.NewClock(storetest.Start)
	s := openSchema(t, dsn, uniqueSchema(t), pgstore.Options{Options: store.Options{Now: clock.Now}})
	t.Cleanup(func() { pgctl(t, "start") }) // whatever happens, leave it running

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var (
		mu        sync.Mutex
		acked     []store.ProviderRecord
		ackCount  atomic.Int64
		failures  atomic.Int64
		stopped   atomic.Bool
		sawDown   = make(chan struct{})
		ackSignal = make(chan struct{}, 1)
		closeDown sync.Once
		example   atomic.Value // an error seen while the server was down
	)
	load, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := storetest.NewRand(t)
			for i := 0; load.Err() == nil; i++ {
				r := storetest.NewProviderRecord(rng, fmt.Appendf(nil, "w%d/%d", w, i), storetest.RandomPeer(rng), clock.Now().Add(time.Hour))
				err := s.AddProviders(load, r)
				switch {
				case err == nil:
					mu.Lock()
					acked = append(acked, r)
					mu.Unlock()
					ackCount.Add(1)
					select {
					case ackSignal <- struct{}{}:
					default:
					}
				case load.Err() != nil:
				case errors.Is(err, pgstore.ErrUnavailable):
					failures.Add(1)
					example.CompareAndSwap(nil, err)
					if stopped.Load() {
						closeDown.Do(func() { close(sawDown) })
					}
					// Throttle the retries while the server is down.
					select {
					case <-load.Done():
					case <-time.After(5 * time.Millisecond):
					}
				default:
					t.Errorf("AddProviders: %v, want nil or ErrUnavailable", err)
				}
				// Reads fail the same way, or succeed.
				if _, err := s.Providers(load, r.Key, 0); err != nil && load.Err() == nil && !errors.Is(err, pgstore.ErrUnavailable) {
					t.Errorf("Providers: %v, want nil or ErrUnavailable", err)
				}
			}
		})
	}
	waitAcks := func(n int64, what string) {
		t.Helper()
		for ackCount.Load() < n {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %d writes acknowledged", what, ackCount.Load())
			case <-ackSignal:
			}
		}
	}
	waitAcks(200, "writes before the restart")
	stopped.Store(true)
	if err := pgctl(t, "stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sawDown:
	case <-ctx.Done():
		t.Fatal("no call failed with ErrUnavailable while the server was down")
	}
	before := ackCount.Load()
	if err := pgctl(t, "start"); err != nil {
		t.Fatal(err)
	}
	waitAcks(before+200, "writes after the restart")
	stopLoad()
	wg.Wait()
	t.Logf("%d writes acknowledged, %d calls failed while the server was down, e.g. %v", ackCount.Load(), failures.Load(), example.Load())

	for _, r := range acked {
		got, err := s.Providers(ctx, r.Key, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Equal(r) {
			t.Errorf("acknowledged write of key %q lost: got %v", r.Key, got)
		}
	}
	// Writes that failed may or may not have been applied; the counters
	// agree with the rows either way.
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := len(scanAll(t, s, store.ScanOptions{Limit: 5000}))
	if st.ProviderRecords != int64(n) || n < len(acked) {
		t.Errorf("Stats counts %d provider records, a scan finds %d, %d acknowledged", st.ProviderRecords, n, len(acked))
	}
}
