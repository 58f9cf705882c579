package kad_test

import (
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	ipnspb "github.com/ipfs/boxo/ipns/pb"
	"github.com/ipfs/boxo/path"
	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/kadstore/kadstore/internal/p2ptest"
)

// The interoperability tests run one network of go-libp2p-kad-dht v0.42.2
// server nodes and kadstore server nodes on loopback; each subtest uses its
// own keys.
func TestInterop(t *testing.T) {
	tn := buildNet(t, 12, 12)
	g0, g1 := tn.gos[0], tn.gos[1]
	k0, k1 := tn.kads[0], tn.kads[1]

	t.Run("RoutingTables", func(t *testing.T) {
		for _, d := range tn.gos {
			if !slices.ContainsFunc(d.RoutingTable().ListPeers(), isKad(tn)) {
				t.Errorf("go node %s has no kadstore node in its table", d.Host().ID())
			}
		}
		for _, k := range tn.kads {
			if !slices.ContainsFunc(k.RoutingPeers(), isGo(tn)) {
				t.Errorf("kadstore node %s has no go node in its table", k.h.ID())
			}
		}
	})

	t.Run("GetClosestPeersAgree", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		key := []byte("closest-peers-key")
		fromKad, err := k0.GetClosestPeers(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		fromGo, err := g0.GetClosestPeers(ctx, string(key))
		if err != nil {
			t.Fatal(err)
		}
		if want := tn.closestTruth(key, k0.h.ID(), 20); !sameSet(fromKad, want) {
			t.Errorf("kadstore lookup: %d peers, want the %d closest", len(fromKad), len(want))
		}
		if want := tn.closestTruth(key, g0.Host().ID(), 20); !sameSet(fromGo, want) {
			t.Errorf("go lookup: %d peers, want the %d closest", len(fromGo), len(want))
		}
		// Both see the same network: apart from each querier leaving itself
		// out, the answers agree.
		common := 0
		for _, p := range fromKad {
			if slices.Contains(fromGo, p) {
				common++
			}
		}
		if common < 18 {
			t.Errorf("kadstore and go lookups share %d of 20 peers", common)
		}
	})

	t.Run("GoProvideServedByKad", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		c := testCID(t, "go-provides")
		if err := g0.Provide(ctx, c, true); err != nil {
			t.Fatal(err)
		}
		closest := tn.closestTruth(c.Hash(), g0.Host().ID(), 20)
		var holders []*kadNode
		for _, k := range tn.kads {
			if slices.Contains(closest, k.h.ID()) {
				holders = append(holders, k)
			}
		}
		if len(holders) == 0 {
			t.Fatal("no kadstore node among the closest peers")
		}
		msgr, err := dhtpb.NewProtocolMessenger(g1.MessageSender())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range holders {
			p2ptest.WaitUntil(t, 30*time.Second, "kadstore node to store the go node's record", func() bool {
				recs, err := k.st.Providers(ctx, c.Hash(), 0)
				return err == nil && len(recs) == 1 && recs[0].Provider == g0.Host().ID() && len(recs[0].Addrs) > 0
			})
			// A go node asks the kadstore node directly.
			provs, _, err := msgr.GetProviders(ctx, k.h.ID(), c.Hash())
			if err != nil {
				t.Fatal(err)
			}
			if len(provs) != 1 || provs[0].ID != g0.Host().ID() || len(provs[0].Addrs) == 0 {
				t.Fatalf("GET_PROVIDERS from %s: %v", k.h.ID(), provs)
			}
		}
	})

	t.Run("KadProvideFoundByGo", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		c := testCID(t, "kad-provides")
		if err := k0.Provide(ctx, c, true); err != nil {
			t.Fatal(err)
		}
		// ADD_PROVIDER is not answered: wait until one closest go node holds it.
		closest := tn.closestTruth(c.Hash(), k0.h.ID(), 20)
		p2ptest.WaitUntil(t, 30*time.Second, "a go node to store the record", func() bool {
			for _, d := range tn.gos {
				if !slices.Contains(closest, d.Host().ID()) {
					continue
				}
				if ps, err := d.ProviderStore().GetProviders(ctx, c.Hash()); err == nil && len(ps) > 0 {
					return true
				}
			}
			return false
		})
		var got []peer.AddrInfo
		for ai := range g1.FindProvidersAsync(ctx, c, 1) {
			got = append(got, ai)
		}
		if len(got) != 1 || got[0].ID != k0.h.ID() || len(got[0].Addrs) == 0 {
			t.Fatalf("go FindProvidersAsync found %v", got)
		}
	})

	t.Run("PublicKeyRecords", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		// kadstore puts, go gets.
		key, val := pkRecord(t)
		if err := k0.PutValue(ctx, key, val); err != nil {
			t.Fatal(err)
		}
		got, err := g1.GetValue(ctx, key)
		if err != nil || string(got) != string(val) {
			t.Fatalf("go GetValue: %x, %v", got, err)
		}
		// go puts, kadstore gets.
		key, val = pkRecord(t)
		if err := g0.PutValue(ctx, key, val); err != nil {
			t.Fatal(err)
		}
		got, err = k1.GetValue(ctx, key)
		if err != nil || string(got) != string(val) {
			t.Fatalf("kadstore GetValue: %x, %v", got, err)
		}
	})

	t.Run("IPNSRecords", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		sk, key := ipnsKey(t)
		v1 := ipnsRecord(t, sk, 1)
		if err := k0.PutValue(ctx, key, v1); err != nil {
			t.Fatal(err)
		}
		got, err := g1.GetValue(ctx, key)
		if err != nil || string(got) != string(v1) {
			t.Fatalf("go GetValue: %v", err)
		}
		// A newer record from the go side wins everywhere, kadstore included.
		v2 := ipnsRecord(t, sk, 2)
		if err := g0.PutValue(ctx, key, v2); err != nil {
			t.Fatal(err)
		}
		got, err = k1.GetValue(ctx, key)
		if err != nil || string(got) != string(v2) {
			t.Fatalf("kadstore GetValue after the go node's update: %v", err)
		}
		// An older record is refused by kadstore nodes that hold the newer one.
		if err := k1.PutValue(ctx, key, v1); err == nil {
			t.Fatal("PutValue of an older IPNS record succeeded")
		}
	})

	t.Run("InvalidIPNSRefused", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		sk, key := ipnsKey(t)
		bad := corruptSignature(t, ipnsRecord(t, sk, 1))
		msgr, err := dhtpb.NewProtocolMessenger(g0.MessageSender())
		if err != nil {
			t.Fatal(err)
		}
		before := metric(t, k0.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": "invalid"})
		err = msgr.PutValue(ctx, k0.h.ID(), &recpb.Record{Key: []byte(key), Value: bad})
		if err == nil {
			t.Fatal("kadstore node accepted an IPNS record with a bad signature")
		}
		if _, err := k0.st.GetValue(ctx, []byte(key)); err == nil {
			t.Fatal("the invalid record was stored")
		}
		// go-libp2p-kad-dht retries a failed request once on a new stream,
		// so the record may be refused twice.
		if got := metric(t, k0.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": "invalid"}); got < before+1 {
			t.Fatalf("records_rejected{invalid} = %v, want at least %v", got, before+1)
		}
		// The node keeps serving the peer that sent it.
		if err := msgr.Ping(ctx, k0.h.ID()); err != nil {
			t.Fatalf("PING after the rejection: %v", err)
		}
	})

	t.Run("ForeignProviderNotStored", func(t *testing.T) {
		ctx := ctxTimeout(t, 60*time.Second)
		msgr, err := dhtpb.NewProtocolMessenger(g0.MessageSender())
		if err != nil {
			t.Fatal(err)
		}
		c := testCID(t, "foreign")
		other := g1.Host()
		before := metric(t, k0.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": "foreign_provider"})
		if err := msgr.PutProviderAddrs(ctx, k0.h.ID(), c.Hash(), peer.AddrInfo{ID: other.ID(), Addrs: other.Addrs()}); err != nil {
			t.Fatal(err)
		}
		p2ptest.WaitUntil(t, 30*time.Second, "the foreign record to be counted", func() bool {
			return metric(t, k0.reg, "kadstore_kad_records_rejected_total", map[string]string{"reason": "foreign_provider"}) == before+1
		})
		if recs, err := k0.st.Providers(ctx, c.Hash(), 0); err != nil || len(recs) != 0 {
			t.Fatalf("stored %v, %v", recs, err)
		}
	})
}

func isKad(tn *testNet) func(peer.ID) bool {
	return func(p peer.ID) bool {
		return slices.ContainsFunc(tn.kads, func(k *kadNode) bool { return k.h.ID() == p })
	}
}

func isGo(tn *testNet) func(peer.ID) bool {
	return func(p peer.ID) bool {
		return slices.ContainsFunc(tn.gos, func(d *dht.IpfsDHT) bool { return d.Host().ID() == p })
	}
}

// pkRecord returns a /pk record of a new key.
func pkRecord(t testing.TB) (string, []byte) {
	t.Helper()
	_, pk, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	val, err := crypto.MarshalPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return "/pk/" + string(id), val
}

// ipnsKey returns a new IPNS key and its routing key.
func ipnsKey(t testing.TB) (crypto.PrivKey, string) {
	t.Helper()
	sk, pk, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, string(ipns.NameFromPeer(id).RoutingKey())
}

// ipnsRecord returns a signed IPNS record with sequence number seq.
func ipnsRecord(t testing.TB, sk crypto.PrivKey, seq uint64) []byte {
	t.Helper()
	rec, err := ipns.NewRecord(sk, path.FromCid(cid.MustParse("bafkqaaa")), seq, time.Now().Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ipns.MarshalRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// corruptSignature flips a bit of an IPNS record's V2 signature.
func corruptSignature(t testing.TB, b []byte) []byte {
	t.Helper()
	var rec ipnspb.IpnsRecord
	if err := proto.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec.SignatureV2[0] ^= 1
	out, err := proto.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
