package record_test

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/record"
)

func Example() {
	p, _ := peer.Decode("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	r := record.ProviderRecord{
		Key:      []byte("some multihash"),
		Provider: p,
		Addrs:    []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.1/tcp/4001")},
		Expires:  time.UnixMilli(1_800_000_000_000),
	}
	b := record.MarshalProvider(r)
	back, err := record.UnmarshalProvider(b)
	fmt.Println(err, back.Equal(r), back.Addrs[0])
	fmt.Println(record.RegionOf(r.KadKey(), 4))
	// Output:
	// <nil> true /ip4/192.0.2.1/tcp/4001
	// 0011/4
}
