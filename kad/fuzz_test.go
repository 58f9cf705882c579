package kad_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/kad"
	"github.com/kadstore/kadstore/kad/internal/pb"
)

// FuzzHandleMessage feeds arbitrary bytes to the message handler as one frame
// from one peer. The handler must never panic, must answer only well-formed
// requests, with a response of the request's type that fits the message cap,
// and must never store a provider record for a peer other than the sender.
// The seed corpus in testdata/fuzz/FuzzHandleMessage runs with plain go test.
func FuzzHandleMessage(f *testing.F) {
	from, _ := peer.Decode("12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5")
	addr := ma.StringCast("/ip4/127.0.0.1/tcp/4001").Bytes()
	seeds := []*pb.Message{
		{Type: pb.Ping},
		{Type: pb.FindNode, Key: []byte(from)},
		{Type: pb.GetValue, Key: []byte("/pk/x")},
		{Type: pb.PutValue, Key: []byte("/pk/x"), Record: &pb.Record{Key: []byte("/pk/x"), Value: []byte("v")}},
		{Type: pb.AddProvider, Key: []byte("mh"), ProviderPeers: []pb.Peer{{ID: []byte(from), Addrs: [][]byte{addr}}}},
		{Type: pb.GetProviders, Key: []byte("mh")},
	}
	for _, m := range seeds {
		f.Add(m.Marshal())
	}
	h := newHost(f, libp2p.NoListenAddrs)
	n := newKadNodeOn(f, h, nil, kad.RequestTimeout(time.Second))
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp, typ, outcome := n.HandleMessageForTest(context.Background(), from, raw)
		var req pb.Message
		decodes := req.Unmarshal(raw) == nil
		if outcome == "ok" && !decodes {
			t.Fatalf("answered undecodable bytes (%s)", typ)
		}
		if resp != nil {
			if outcome != "ok" {
				t.Fatalf("response with outcome %s", outcome)
			}
			if len(resp) > pb.MaxMessageSize {
				t.Fatalf("response of %d bytes", len(resp))
			}
			var m pb.Message
			if err := m.Unmarshal(resp); err != nil {
				t.Fatalf("response does not decode: %v", err)
			}
			if m.Type != req.Type {
				t.Fatalf("%v answered with %v", req.Type, m.Type)
			}
		}
		if decodes && req.Type == pb.AddProvider && len(req.Key) > 0 {
			if err := n.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			recs, err := n.Store().Providers(context.Background(), req.Key, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.Provider != from {
					t.Fatalf("stored a record of %s from %s", r.Provider, from)
				}
			}
			if outcome == "ok" && (len(recs) == 0 || !bytes.Equal(recs[0].Key, req.Key)) {
				t.Fatal("accepted ADD_PROVIDER not stored")
			}
		}
	})
}
