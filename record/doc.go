// Package record defines the two kinds of records a Kademlia DHT node stores for
// other peers, the Kademlia keyspace they are routed by, and a versioned binary
// codec for them.
//
// A ProviderRecord says "peer Provider, reachable at Addrs, can serve the content
// named by Key" until Expires. A ValueRecord is a key/value pair (in the Amino
// DHT: /pk/ public keys and /ipns/ signed name records) until Expires.
//
// Times are wall-clock (time.Time), never monotonic, so a record keeps its meaning
// across restarts. The codec stores them as Unix milliseconds, so a round trip
// truncates to the millisecond; every constructor in this module works in
// milliseconds for that reason.
//
// The Kademlia key of a record key is its SHA-256 digest (KadKeyOf), the keyspace
// go-libp2p-kad-dht and rust-libp2p route by. A Region is a bit prefix of that
// keyspace; regions are how stores page through records in keyspace order and how
// background jobs group keys that share their closest peers.
//
// The codec (MarshalProvider, UnmarshalProvider, MarshalValue, UnmarshalValue)
// writes a version byte, the fields, and a CRC-32C checksum. Decoding never panics:
// truncated, corrupt or unknown-version bytes give an error matching ErrCorrupt or
// ErrVersion.
package record
