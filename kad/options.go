package kad

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/store"
)

// ModeOpt selects whether the node serves the DHT protocol.
type ModeOpt int

const (
	// ModeAuto serves the protocol only while go-libp2p reports the host
	// publicly reachable (event.EvtLocalReachabilityChanged), and acts as a
	// client otherwise. It is the default, as in go-libp2p-kad-dht.
	ModeAuto ModeOpt = iota
	// ModeServer always serves the protocol and advertises it.
	ModeServer
	// ModeClient never serves nor advertises the protocol, so other nodes
	// never add it to their routing tables; it still queries the DHT.
	ModeClient
)

func (m ModeOpt) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeServer:
		return "server"
	case ModeClient:
		return "client"
	}
	return fmt.Sprintf("ModeOpt(%d)", int(m))
}

// Defaults. The Amino DHT (the IPFS public DHT) values, except where noted.
const (
	// DefaultProtocolPrefix makes the protocol ID /ipfs/kad/1.0.0.
	DefaultProtocolPrefix protocol.ID = "/ipfs"
	// DefaultBucketSize is k, the replication parameter.
	DefaultBucketSize = 20
	// DefaultConcurrency is alpha, the requests in flight per lookup (the
	// specification suggests 3; go-libp2p-kad-dht and Amino use 10).
	DefaultConcurrency = 10
	// DefaultProviderTTL is how long a received provider record is kept.
	DefaultProviderTTL = 48 * time.Hour
	// DefaultRecordTTL is how long a received value record is kept.
	DefaultRecordTTL = 48 * time.Hour
	// DefaultRequestTimeout bounds the handling of one inbound request,
	// the wait for a store slot and the store call (writing the response
	// has as long again). It is below go-libp2p-kad-dht's 10 s client read
	// timeout, so a slow store gives the requester a reset stream before its
	// own timeout.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultStoreConcurrency bounds the store calls in flight.
	DefaultStoreConcurrency = 64
	// DefaultStreamIdleTimeout closes an inbound stream with no request for
	// that long, as go-libp2p-kad-dht does.
	DefaultStreamIdleTimeout = time.Minute
	// DefaultPeerTimeout bounds one outbound request (dial, write, response).
	DefaultPeerTimeout = 10 * time.Second
	// DefaultRefreshInterval is how often the routing table is refreshed.
	DefaultRefreshInterval = 10 * time.Minute
	// DefaultPeerWriteRate is the sustained rate, in records a second, at
	// which one remote peer may have records stored (ADD_PROVIDER and
	// PUT_VALUE). kadstore's own choice: go-libp2p-kad-dht has no such limit.
	// A 2-core node stores 20 000+ records a second; one peer gets a twentieth.
	DefaultPeerWriteRate = 1000
	// DefaultPeerWriteBurst is how many records one peer may send at once
	// before DefaultPeerWriteRate applies: a sweeping reprovider sends all the
	// keys of its keyspace region to each of the region's peers in one batch,
	// and a provider of 1.75 M keys sends each of the ≈ 3 500 Amino servers
	// about 1.75 M × 20 / 3 500 = 10 000.
	DefaultPeerWriteBurst = 10_000
	// DefaultBootstrapBackoffMin and DefaultBootstrapBackoffMax bound the
	// wait between bootstrap attempts while the routing table is empty.
	DefaultBootstrapBackoffMin = time.Second
	DefaultBootstrapBackoffMax = time.Minute
	// DefaultWritePeers bounds the peers whose write rate is tracked at once.
	DefaultWritePeers = 10_000
	// maxWriteWait is the longest a record waits for its peer's token before
	// it is refused instead.
	maxWriteWait = time.Second
)

// Protocol-level limits.
const (
	// MaxMessageSize is the largest message read or written: 4 MiB.
	MaxMessageSize = 4 << 20
	// MaxProviderKeySize is the longest ADD_PROVIDER/GET_PROVIDERS key (a
	// multihash), as go-libp2p-kad-dht enforces.
	MaxProviderKeySize = 80
	// MaxKeySize is the longest key of any other request.
	MaxKeySize = 1 << 10
)

type config struct {
	mode              ModeOpt
	prefix            protocol.ID
	bucketSize        int
	alpha             int
	validators        map[string]record.Validator
	registerer        prometheus.Registerer
	logger            *slog.Logger
	bootstrap         []peer.AddrInfo
	requestTimeout    time.Duration
	storeConcurrency  int
	streamIdleTimeout time.Duration
	peerTimeout       time.Duration
	refreshInterval   time.Duration
	providerTTL       time.Duration
	recordTTL         time.Duration
	now               func() time.Time
	writeBehind       int
	writeRate         float64
	writeBurst        int
	writePeers        int
	maxAddrs          int
	addrFilter        func([]ma.Multiaddr) []ma.Multiaddr
	bootstrapMin      time.Duration
	bootstrapMax      time.Duration
}

func defaults() config {
	return config{
		mode:              ModeAuto,
		prefix:            DefaultProtocolPrefix,
		bucketSize:        DefaultBucketSize,
		alpha:             DefaultConcurrency,
		validators:        map[string]record.Validator{},
		logger:            slog.Default(),
		requestTimeout:    DefaultRequestTimeout,
		storeConcurrency:  DefaultStoreConcurrency,
		streamIdleTimeout: DefaultStreamIdleTimeout,
		peerTimeout:       DefaultPeerTimeout,
		refreshInterval:   DefaultRefreshInterval,
		providerTTL:       DefaultProviderTTL,
		recordTTL:         DefaultRecordTTL,
		now:               time.Now,
		writeBehind:       store.DefaultWriteBehindRecords,
		writeRate:         DefaultPeerWriteRate,
		writeBurst:        DefaultPeerWriteBurst,
		writePeers:        DefaultWritePeers,
		maxAddrs:          store.DefaultMaxAddrs,
		bootstrapMin:      DefaultBootstrapBackoffMin,
		bootstrapMax:      DefaultBootstrapBackoffMax,
	}
}

// Option configures a Node. Options are applied in order by New.
type Option func(*config) error

var errBadOption = errors.New("kad: invalid option")

// Mode sets the node's mode. Default ModeAuto.
func Mode(m ModeOpt) Option {
	return func(c *config) error {
		if m != ModeAuto && m != ModeServer && m != ModeClient {
			return fmt.Errorf("%w: mode %v", errBadOption, m)
		}
		c.mode = m
		return nil
	}
}

// ProtocolPrefix sets the prefix of the protocol ID, prefix + "/kad/1.0.0",
// for a private network. Default "/ipfs".
func ProtocolPrefix(prefix protocol.ID) Option {
	return func(c *config) error {
		if prefix == "" || prefix[0] != '/' {
			return fmt.Errorf("%w: protocol prefix %q must start with /", errBadOption, prefix)
		}
		c.prefix = prefix
		return nil
	}
}

// BucketSize sets k: the size of a routing-table bucket, the number of
// closest peers a lookup returns and a record is sent to. Default 20.
func BucketSize(k int) Option {
	return func(c *config) error {
		if k <= 0 {
			return fmt.Errorf("%w: bucket size %d", errBadOption, k)
		}
		c.bucketSize = k
		return nil
	}
}

// Concurrency sets alpha, the requests in flight per lookup. Default 10.
func Concurrency(alpha int) Option {
	return func(c *config) error {
		if alpha <= 0 {
			return fmt.Errorf("%w: concurrency %d", errBadOption, alpha)
		}
		c.alpha = alpha
		return nil
	}
}

// NamespacedValidator registers the validator of one record namespace (the
// first path segment of a key, e.g. "ipns" for /ipns/...). The node always
// validates /pk and /ipns; PUT_VALUE of a key in any namespace without a
// validator is rejected. Registering "pk" or "ipns" replaces the default.
func NamespacedValidator(ns string, v record.Validator) Option {
	return func(c *config) error {
		if ns == "" || v == nil {
			return fmt.Errorf("%w: validator for namespace %q", errBadOption, ns)
		}
		c.validators[ns] = v
		return nil
	}
}

// Registerer registers the node's Prometheus metrics with r. Without it the
// metrics are kept but registered nowhere. Two nodes in one registry collide:
// wrap the registerer with prometheus.WrapRegistererWith and a label per node.
func Registerer(r prometheus.Registerer) Option {
	return func(c *config) error {
		c.registerer = r
		return nil
	}
}

// Logger sets the logger. Default slog.Default().
func Logger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", errBadOption)
		}
		c.logger = l
		return nil
	}
}

// BootstrapPeers sets the peers Bootstrap connects to before its first
// lookup.
func BootstrapPeers(peers ...peer.AddrInfo) Option {
	return func(c *config) error {
		c.bootstrap = append(c.bootstrap, peers...)
		return nil
	}
}

// RequestTimeout bounds the handling of one inbound request: waiting for a
// store slot and the store calls. A request that passes it fails (its
// stream is reset). Writing the response then gets a deadline of its own,
// as long again, so a request holds its stream for at most twice the
// timeout. Default 5 s.
func RequestTimeout(d time.Duration) Option {
	return positive("request timeout", d, func(c *config) *time.Duration { return &c.requestTimeout })
}

// StoreConcurrency bounds the store calls in flight at once, across all
// requests. Default 64.
func StoreConcurrency(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: store concurrency %d", errBadOption, n)
		}
		c.storeConcurrency = n
		return nil
	}
}

// StreamIdleTimeout sets how long an inbound stream may wait for its next
// request before it is reset. Default 1 min.
func StreamIdleTimeout(d time.Duration) Option {
	return positive("stream idle timeout", d, func(c *config) *time.Duration { return &c.streamIdleTimeout })
}

// PeerTimeout bounds one outbound request to one peer. Default 10 s.
func PeerTimeout(d time.Duration) Option {
	return positive("peer timeout", d, func(c *config) *time.Duration { return &c.peerTimeout })
}

// RefreshInterval sets how often the routing table is refreshed; 0 turns the
// periodic refresh off (Bootstrap still refreshes once). Default 10 min.
func RefreshInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: refresh interval %v", errBadOption, d)
		}
		c.refreshInterval = d
		return nil
	}
}

// ProviderTTL sets how long provider records (received, and the node's own)
// are kept. It must not exceed the store's MaxTTL. Default 48 h.
func ProviderTTL(d time.Duration) Option {
	return positive("provider TTL", d, func(c *config) *time.Duration { return &c.providerTTL })
}

// RecordTTL sets how long value records are kept. It must not exceed the
// store's MaxTTL. Default 48 h.
func RecordTTL(d time.Duration) Option {
	return positive("record TTL", d, func(c *config) *time.Duration { return &c.recordTTL })
}

// Clock sets the clock used for record expiry. Default time.Now.
func Clock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", errBadOption)
		}
		c.now = now
		return nil
	}
}

// WriteBehind sets how provider records received from peers (ADD_PROVIDER)
// reach the store: through a store.WriteBehind of that many records a commit
// (the default, store.DefaultWriteBehindRecords), or, with 0, one store call
// a record, waited for before the next request of the stream is read.
//
// With a write-behind the handler returns as soon as the record is accepted
// (it is served to GET_PROVIDERS at once), and records are committed in
// batches, which ingests about 1.5 times as fast (docs/BENCHMARKS.md); a
// kill -9 loses the records accepted and not yet committed: at most
// 2×records, those received during the last commit (a few milliseconds) and
// the one before it. Their
// providers republish them (every 22 h in go-libp2p-kad-dht), and
// ADD_PROVIDER has no response that could have promised more. With 0, a
// record the handler accepted survives kill -9 like the node's own records.
// PUT_VALUE, whose response tells the sender the record was stored, always
// waits for the store.
func WriteBehind(records int) Option {
	return func(c *config) error {
		if records < 0 {
			return fmt.Errorf("%w: write-behind records %d", errBadOption, records)
		}
		c.writeBehind = records
		return nil
	}
}

// PeerWriteLimit sets the per-peer write admission: each remote peer may
// have at most recordsPerSecond records stored a second (ADD_PROVIDER and
// PUT_VALUE, one record each), after a burst of burst records, which is
// itself spent at no more than twice that rate. A record over
// the rate waits for its turn up to one second, which slows the sender's
// stream, and is refused past that (the stream is reset, and
// kadstore_kad_records_rejected_total{reason="rate_limited"} counts it).
// recordsPerSecond <= 0 turns the limit off. Default 1 000 a second, burst
// 10 000 (DefaultPeerWriteRate, DefaultPeerWriteBurst).
func PeerWriteLimit(recordsPerSecond float64, burst int) Option {
	return func(c *config) error {
		if recordsPerSecond > 0 && burst <= 0 {
			return fmt.Errorf("%w: write burst %d", errBadOption, burst)
		}
		c.writeRate, c.writeBurst = recordsPerSecond, burst
		return nil
	}
}

// WritePeers bounds how many peers' write rates are tracked at once; past it,
// idle peers are forgotten first. Default 10 000.
func WritePeers(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: write peers %d", errBadOption, n)
		}
		c.writePeers = n
		return nil
	}
}

// MaxProviderAddrs sets the most addresses kept with a provider record, the
// node's own and received ones; set it to the store's Limits.MaxAddrs, or the
// store refuses records with more. Default store.DefaultMaxAddrs.
func MaxProviderAddrs(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: max provider addresses %d", errBadOption, n)
		}
		c.maxAddrs = n
		return nil
	}
}

// AddressFilter filters the addresses of received provider records before
// they are stored, as go-libp2p-kad-dht's option of the same name. A record
// whose addresses are all filtered out is still stored, without addresses (a
// requester then asks the network for the provider's addresses), as
// go-libp2p-kad-dht does. Default none. PublicAddrs is the filter of a node in
// the public network.
func AddressFilter(f func([]ma.Multiaddr) []ma.Multiaddr) Option {
	return func(c *config) error {
		c.addrFilter = f
		return nil
	}
}

// PublicAddrs keeps only public addresses: no loopback, private, link-local
// or otherwise unroutable ones. It is the filter go-libp2p-kad-dht's WAN DHT
// applies, for AddressFilter.
func PublicAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	return ma.FilterAddrs(addrs, manet.IsPublicAddr)
}

// BootstrapBackoff sets the wait between bootstrap attempts while the
// routing table is empty: min after a success or when the table empties,
// doubling after each failure up to max. Default 1 s to 1 min.
func BootstrapBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max < min {
			return fmt.Errorf("%w: bootstrap backoff %v to %v", errBadOption, min, max)
		}
		c.bootstrapMin, c.bootstrapMax = min, max
		return nil
	}
}

func positive(name string, d time.Duration, field func(*config) *time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: %s %v", errBadOption, name, d)
		}
		*field(c) = d
		return nil
	}
}
