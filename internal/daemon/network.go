package daemon

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
)

// Connection-manager defaults: a DHT server is dialled by many short-lived
// clients, so it keeps far more connections than go-libp2p's default (160 to
// 192). Routing-table peers are tagged by the kad node and trimmed last.
const (
	DefaultConnsLow  = 600
	DefaultConnsHigh = 900
	// connGrace is how long a new connection is safe from trimming.
	connGrace = time.Minute
)

// Resource limits of a DHT server, on top of go-libp2p's defaults (which
// are sized for a desktop node). Each is a base plus an increase per GiB of
// the memory given to libp2p (1/8 of the machine's, as go-libp2p's
// AutoScale), so they grow with the machine.
//
// Inbound connections, system-wide and not yet authenticated (transient
// scope): go-libp2p allows 32 + 16/GiB not-yet-handshaken inbound
// connections (79 on a 24 GiB machine), and holds each for the upgrader's 15 s
// accept timeout, so 79 silent TCP connections shut every new peer out. Here
// both allow 1024 + 512/GiB: a silent connection costs a socket and a
// goroutine, so a node holds thousands.
//
// Per address: go-libp2p's connection limiter (kept) allows 8 connections per
// IPv4 address and per IPv6 /56 (64 per /48), handshaken or not, so one
// address cannot fill the table above. go-libp2p exempts all of 127.0.0.0/8;
// kadstore exempts only 127.0.0.1 and ::1 (local tools and tests).
//
// Per peer on the Kademlia protocol: 32 inbound streams (go-libp2p-kad-dht
// uses one stream per peer at a time; go-libp2p's default is 64 + 4/GiB).
var (
	sysConnsInbound     = rcmgr.BaseLimit{ConnsInbound: 1024, Conns: 2048}
	sysConnsIncrease    = rcmgr.BaseLimitIncrease{ConnsInbound: 512, Conns: 512}
	kadPeerStreamsLimit = rcmgr.BaseLimit{StreamsInbound: 32, StreamsOutbound: 32, Streams: 64, Memory: 16 << 20}
)

// resourceManager builds the go-libp2p resource manager of a DHT server
// speaking proto.
func resourceManager(proto protocol.ID) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	raise := func(b *rcmgr.BaseLimit, i *rcmgr.BaseLimitIncrease) {
		b.ConnsInbound = max(b.ConnsInbound, sysConnsInbound.ConnsInbound)
		b.Conns = max(b.Conns, sysConnsInbound.Conns)
		i.ConnsInbound = max(i.ConnsInbound, sysConnsIncrease.ConnsInbound)
		i.Conns = max(i.Conns, sysConnsIncrease.Conns)
	}
	raise(&limits.SystemBaseLimit, &limits.SystemLimitIncrease)
	raise(&limits.TransientBaseLimit, &limits.TransientLimitIncrease)
	limits.TransientLimitIncrease.FDFraction = max(limits.TransientLimitIncrease.FDFraction, 0.5)
	limits.AddProtocolPeerLimit(proto, kadPeerStreamsLimit, rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()),
		rcmgr.WithNetworkPrefixLimit(
			[]rcmgr.NetworkPrefixLimit{{Network: netip.MustParsePrefix("127.0.0.1/32"), ConnCount: math.MaxInt}},
			[]rcmgr.NetworkPrefixLimit{{Network: netip.MustParsePrefix("::1/128"), ConnCount: math.MaxInt}},
		))
	if err != nil {
		return nil, fmt.Errorf("daemon: resource manager: %w", err)
	}
	return rm, nil
}

// hostOptions are the libp2p options that size the host for a DHT server:
// resource manager, connection manager, and metrics in the daemon's registry.
func (d *Daemon) hostOptions(proto protocol.ID) ([]libp2p.Option, error) {
	low, high := d.cfg.ConnsLow, d.cfg.ConnsHigh
	if low == 0 {
		low = DefaultConnsLow
	}
	if high == 0 {
		high = DefaultConnsHigh
	}
	if low < 0 || high < low {
		return nil, fmt.Errorf("%w: connection manager low %d, high %d", ErrConfig, low, high)
	}
	cm, err := connmgr.NewConnManager(low, high, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		return nil, fmt.Errorf("%w: connection manager: %v", ErrConfig, err)
	}
	rm, err := resourceManager(proto)
	if err != nil {
		cm.Close()
		return nil, err
	}
	return []libp2p.Option{
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.PrometheusRegisterer(d.Registry),
	}, nil
}

// API server limits. A request has APIReadTimeout to arrive whole (header
// and body: the body is capped at api.MaxBody, 1 MiB, so a client sending
// under 35 KiB/s is cut off), and its answer APIWriteTimeout to be written
// (routing lookups are bounded by 30 s, provide announces up to
// api.MaxProvideKeys keys); an idle keep-alive connection is closed after
// APIIdleTimeout. Connections past DefaultAPIMaxConns wait in the kernel's
// accept queue until one closes.
const (
	APIReadHeaderTimeout = 10 * time.Second
	APIReadTimeout       = 30 * time.Second
	APIWriteTimeout      = 5 * time.Minute
	APIIdleTimeout       = 30 * time.Second
	APIMaxHeaderBytes    = 64 << 10
	DefaultAPIMaxConns   = 1024
)

func newAPIServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: APIReadHeaderTimeout,
		ReadTimeout:       APIReadTimeout,
		WriteTimeout:      APIWriteTimeout,
		IdleTimeout:       APIIdleTimeout,
		MaxHeaderBytes:    APIMaxHeaderBytes,
	}
}
