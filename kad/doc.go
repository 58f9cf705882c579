// Package kad is a Kademlia DHT node on go-libp2p that keeps every record in a
// store.Store. It speaks the libp2p Kademlia protocol (/ipfs/kad/1.0.0 by
// default) byte for byte as go-libp2p-kad-dht and rust-libp2p do, so it joins
// the Amino DHT or any private network of those implementations.
//
//	n, err := kad.New(host, st, kad.Mode(kad.ModeServer), kad.BootstrapPeers(peers...))
//	...
//	err = n.Provide(ctx, c, true)
//	for p, err := range n.FindProviders(ctx, c, 5) { ... }
//
// # Protocol
//
// Messages are protobufs as in the specification, each preceded by its length
// as an unsigned varint, at most 4 MiB. An inbound stream may carry many
// requests, answered in order; a stream idle for StreamIdleTimeout is reset.
// Outbound streams are reused per peer. Anything invalid (oversized, garbage,
// an unknown type, an empty or overlong key, a record whose key differs from
// the request's) resets the stream, as the specification asks, and is counted
// in the metrics; other streams and peers are not affected.
//
// # Server side
//
// Handlers read and write records only through the store:
//
//   - PUT_VALUE validates the record with a namespaced validator (/pk, and
//     /ipns through boxo's ipns validator, plus any namespace registered with
//     NamespacedValidator; other namespaces are refused), keeps the better of
//     it and the stored record by the validator's Select, and echoes it.
//   - GET_VALUE answers with the stored record, if any, and the closer peers.
//   - ADD_PROVIDER is accepted only for the sending peer itself; its addresses
//     are stored with the record, so they survive a restart. Entries naming
//     another peer are dropped and counted. The addresses are stored without
//     a trailing /p2p/<provider>, once each, through the AddressFilter (none
//     by default; PublicAddrs for a node in the public network), trimmed to
//     MaxProviderAddrs; a record left without addresses is still stored, as
//     go-libp2p-kad-dht does. Received records reach the store through a
//     store.WriteBehind (WriteBehind option): committed in batches, served
//     at once, and at most 2×1 024 of them lost to a kill -9; the node's own
//     records never go that way.
//   - GET_PROVIDERS answers with the stored providers and their stored
//     addresses (with those the write-behind holds), and the closer peers.
//   - FIND_NODE and PING are answered from the routing table alone.
//
// # Write admission
//
// Each remote peer may have records stored (ADD_PROVIDER, PUT_VALUE) at
// PeerWriteLimit's rate after its burst (default 1 000 a second after
// 10 000), the burst spent at no more than twice the rate. A record over the rate waits up to one second for its token
// without its stream being read, which slows the sender by flow control; one
// whose token is further away is refused, its stream reset, and counted as
// rate_limited. Peers' buckets are bounded by WritePeers, idle ones forgotten
// first. A store limit on a provider's records (store.ErrProviderFull) is
// counted as provider_full.
//
// # Client side
//
// GetClosestPeers runs an iterative lookup (alpha requests in flight) toward
// the k closest peers. PutValue, GetValue (with Quorum, choosing the best
// value with the validator and correcting peers that held a worse one),
// SearchValue, Provide, FindProviders (an iterator that yields providers as
// they arrive and stops at a count), FindProvidersAsync and FindPeer are built
// on it; the Node implements go-libp2p's routing.Routing. The routing table
// is go-libp2p-kbucket's: peers enter it when identify shows they speak the
// protocol or when they answer a request, and leave it when they stop
// advertising it or fail a request. Bootstrap and RefreshRoutingTable refresh
// it, and it is refreshed every RefreshInterval. Bootstrap reports a failure
// (ErrBootstrap) and keeps trying, with backoff, while the routing table is
// empty. Routing-table peers are tagged in the host's connection manager, so
// their connections are trimmed last.
//
// # Modes
//
// In ModeServer the node registers the protocol handler, so identify
// advertises it; in ModeClient it never does, so other nodes never add it to
// their tables, while it still runs lookups. ModeAuto (the default) serves
// only while go-libp2p reports the host publicly reachable, which never
// happens on a LAN or on loopback: use ModeServer there. The node logs its
// mode at start, and each switch in auto mode.
//
// # Concurrency
//
// Each inbound stream is served by its own goroutine. Store calls run with
// the request's deadline (RequestTimeout) through a pool bounded by
// StoreConcurrency; no lock is held across store I/O. When the store is slow,
// a request waits for a slot and for the call no longer than its deadline,
// then fails (its stream is reset, and the outcome store_timeout is counted),
// while PING and FIND_NODE, which never touch the store, keep being answered.
// Close waits for store calls in flight to return.
//
// # Jobs
//
// Self, RoutingPeers, Lookup (toward a point of the keyspace),
// SendProviders, SendAddProviders, SendValues and SendPutValue are the
// building blocks for background work such as reproviding by keyspace region
// and replication, which run outside this package.
//
// # Metrics
//
// With the Registerer option the node exports Prometheus metrics:
// kadstore_kad_messages_received_total{type,outcome},
// kadstore_kad_messages_sent_total{type,outcome},
// kadstore_kad_store_call_duration_seconds{method},
// kadstore_kad_routing_table_peers,
// kadstore_kad_records_rejected_total{reason}, and
// kadstore_kad_bootstrap_attempts_total{outcome}.
package kad
