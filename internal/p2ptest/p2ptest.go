// Package p2ptest gives tests and the loopback test network real go-libp2p
// hosts that listen on 127.0.0.1 only: TCP, Noise and Yamux, no relay, no
// metrics and no resource limits, so that dozens of hosts start quickly in one
// process and nothing reaches beyond the machine.
package p2ptest

import (
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Options are the libp2p options of a loopback host; options given after them
// (an identity, say) are added to them.
func Options() []libp2p.Option {
	return []libp2p.Option{
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	}
}

// New starts a loopback host with opts added to Options.
func New(opts ...libp2p.Option) (host.Host, error) {
	return libp2p.New(append(Options(), opts...)...)
}

// NewHost starts a loopback host for a test and closes it when the test ends.
func NewHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// WaitUntil polls cond until it holds, failing the test after timeout. It is
// for events the protocol does not acknowledge (ADD_PROVIDER has no answer,
// identify completes in the background), never as a sleep.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// SilentConns opens n plain TCP connections from the local IP address from
// (any 127.0.0.0/8 address on Linux) to the TCP address of a host, which
// never speak: they stay before the security handshake. They are closed when
// the test ends.
func SilentConns(t testing.TB, h host.Host, from string, n int) []net.Conn {
	t.Helper()
	var target string
	for _, a := range h.Addrs() {
		if na, err := manet.ToNetAddr(a); err == nil && na.Network() == "tcp" {
			target = na.String()
			break
		}
	}
	if target == "" {
		t.Fatal("host has no TCP address")
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// Closed counts the connections the other side has closed: a read returns
// EOF or a reset at once, while an open silent connection has nothing to
// read. Bytes the other side sent (a multistream header) are discarded.
func Closed(conns []net.Conn) int {
	closed := 0
	buf := make([]byte, 512)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue
			}
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				closed++
			}
			break
		}
	}
	return closed
}
