// Package jobs runs a DHT node's background work over its record store, one
// Scan page at a time:
//
//   - Expirer removes expired records in bounded batches, pausing between
//     batches so lookups are never starved.
//   - Reprovider re-announces the node's own provider records region by
//     region: a few closest-peers lookups per keyspace region, then ADD_PROVIDER
//     for every key of the region to the peers closest to it, batched per
//     peer; and it refreshes the records' own expiry.
//   - Replicator re-sends every stored value record to the peers now closest
//     to it, region by region, and republishes the node's own value records
//     with a fresh expiry.
//
// Regions. A region is a bit prefix of the Kademlia keyspace. Its length is
// chosen from an estimate of the network size so that a region holds a few
// times k peers. A region that holds k peers or more holds the k closest peers
// of each of its keys (in the XOR metric, a longer shared prefix is always
// closer), so the walk finds every peer of the region: a lookup toward it, and
// toward each half in turn (unless an earlier lookup already learned all its
// peers) while k or more of the peers a lookup learned lie
// in the part it aimed at (fewer means the part holds fewer than k peers, and
// the lookup, which learns the k closest, found them all); if the
// region turned out to hold fewer than k, its sibling too. The k closest peers
// of each key are then picked locally by XOR distance. A cycle over N keys
// costs a small multiple of (network size / k) lookups instead of N.
//
// Memory and resumption. A job holds one page of records and one region's
// candidate peers at a time, whatever the number of records. After each page
// it saves its cursor (a keyspace position, valid across restarts and region
// sizes) through a StateStore, so a restarted node resumes the cycle where it
// stopped instead of starting over. Progress (records done, cursor, last run,
// errors) is readable at any time.
//
// The jobs reach the network through the small Network interface, which the
// kad node implements; tests drive them with a fake one.
package jobs
