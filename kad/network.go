package kad

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store"
)

// The methods in this file are what background jobs (expiry, republishing,
// reproviding by keyspace region, replication) need from the node: they are
// built on the same lookup and messenger as the rest of the client side.

// Self returns the node's peer ID.
func (n *Node) Self() peer.ID { return n.self }

// RoutingPeers returns the peers of the routing table.
func (n *Node) RoutingPeers() []peer.ID { return n.rt.ListPeers() }

// lookupPrefixBits is how many leading bits of a keyspace target the FIND_NODE
// key of Lookup shares with it. Remote peers rank peers by the key, so the
// peers they return are those closest to the target as long as the network's
// k closest peers to a point span fewer bits than this: true below about
// k·2^16 (1.3 M) DHT servers.
const lookupPrefixBits = 16

// Lookup runs an iterative lookup toward a point of the Kademlia keyspace
// (rather than toward a record key, whose SHA-256 would be the point) and
// returns every peer it heard of that did not fail, nearest first. The
// FIND_NODE requests carry a key whose SHA-256 shares the first 16 bits with
// target; the local ranking uses target itself.
func (n *Node) Lookup(ctx context.Context, target record.KadKey) ([]peer.ID, error) {
	key := keyNear(target, lookupPrefixBits)
	var all []peer.ID
	_, err := n.lookupAll(ctx, kb.ID(target[:]), n.findNodeQuery(key), nil, &all)
	return all, err
}

// keyNear returns a short key whose SHA-256 shares its first bits bits with
// target, by search (about 2^bits hashes).
func keyNear(target record.KadKey, bits int) []byte {
	key := make([]byte, 8)
	for i := uint64(0); ; i++ {
		binary.BigEndian.PutUint64(key, i)
		if record.CommonPrefixLen(sha256.Sum256(key), target) >= bits {
			return key
		}
	}
}

// SendProviders announces the node as provider of each record's key to p, one
// ADD_PROVIDER per record on one stream, with the node's current addresses.
// The records must be the node's own.
func (n *Node) SendProviders(ctx context.Context, p peer.ID, recs []store.ProviderRecord) error {
	keys := make([][]byte, len(recs))
	for i, r := range recs {
		if r.Provider != n.self {
			return fmt.Errorf("kad: provider record of %s is not this node's", r.Provider)
		}
		keys[i] = r.Key
	}
	return n.SendAddProviders(ctx, p, keys...)
}

// SendValues sends one PUT_VALUE per record to p, in order, stopping at the
// first that p does not acknowledge.
func (n *Node) SendValues(ctx context.Context, p peer.ID, recs []store.ValueRecord) error {
	for _, r := range recs {
		if err := n.SendPutValue(ctx, p, r.Key, r.Value); err != nil {
			return fmt.Errorf("kad: PUT_VALUE to %s: %w", p, err)
		}
	}
	return nil
}
