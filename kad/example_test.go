package kad_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
)

// Two nodes on loopback: one provides a CID, the other finds it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	newHost := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			log.Fatal(err)
		}
		return h
	}
	ha, hb := newHost(), newHost()
	defer ha.Close()
	defer hb.Close()
	sa, sb := memstore.New(store.Options{}), memstore.New(store.Options{})
	defer sa.Close()
	defer sb.Close()

	// Each node bootstraps from the other.
	a, err := kad.New(ha, sa, kad.Mode(kad.ModeServer), kad.BootstrapPeers(peer.AddrInfo{ID: hb.ID(), Addrs: hb.Addrs()}))
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	b, err := kad.New(hb, sb, kad.Mode(kad.ModeServer), kad.BootstrapPeers(peer.AddrInfo{ID: ha.ID(), Addrs: ha.Addrs()}))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	for _, n := range []*kad.Node{a, b} {
		if err := n.RefreshRoutingTable(ctx); err != nil {
			log.Fatal(err)
		}
	}

	mh, _ := multihash.Sum([]byte("hello, kadstore"), multihash.SHA2_256, -1)
	c := cid.NewCidV1(cid.Raw, mh)
	if err := a.Provide(ctx, c, true); err != nil {
		log.Fatal(err)
	}
	for p, err := range b.FindProviders(ctx, c, 1) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("found provider a:", p.ID == ha.ID(), "with addresses:", len(p.Addrs) > 0)
	}
	// Output: found provider a: true with addresses: true
}
