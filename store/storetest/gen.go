package storetest

import (
	cryptorand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/store"
)

// SeedEnv names the environment variable that fixes the seed of NewRand.
const SeedEnv = "STORETEST_SEED"

// NewRand returns a random source for a test. Its seed is random unless the
// environment variable STORETEST_SEED sets it, and it is logged, so a failure
// can be repeated.
func NewRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := rand.Uint64()
	if v := os.Getenv(SeedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, v, err)
		}
		seed = s
	}
	t.Logf("random seed %d (repeat with %s=%d)", seed, SeedEnv, seed)
	return rand.New(rand.NewPCG(seed, seed^0x6b61647374))
}

func randomDigest(rng *rand.Rand) []byte {
	b := make([]byte, 32)
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// RandomPeer returns a valid peer ID drawn from rng: a SHA-256 multihash, the
// form of the peer ID of an RSA key. (Ed25519 IDs embed a public key, which
// cannot be drawn deterministically from rng.)
func RandomPeer(rng *rand.Rand) peer.ID {
	h, err := mh.Encode(randomDigest(rng), mh.SHA2_256)
	if err != nil {
		panic(err)
	}
	return peer.ID(h)
}

// RandomKey returns a content key drawn from rng: a SHA-256 multihash, as
// the DHT uses for provider records.
func RandomKey(rng *rand.Rand) []byte {
	h, err := mh.Encode(randomDigest(rng), mh.SHA2_256)
	if err != nil {
		panic(err)
	}
	return h
}

// RandomAddrs returns n addresses drawn from rng, alternating TCP and QUIC.
func RandomAddrs(rng *rand.Rand, n int) []ma.Multiaddr {
	if n == 0 {
		return nil
	}
	addrs := make([]ma.Multiaddr, n)
	for i := range addrs {
		ip := rng.Uint32()
		s := fmt.Sprintf("/ip4/%d.%d.%d.%d/tcp/%d", byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip), 1024+rng.IntN(60000))
		if i%2 == 1 {
			s = fmt.Sprintf("/ip4/%d.%d.%d.%d/udp/%d/quic-v1", byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip), 1024+rng.IntN(60000))
		}
		addrs[i] = ma.StringCast(s)
	}
	return addrs
}

// NewProviderRecord returns a record of provider p for key with 0 to 2
// addresses drawn from rng, expiring at expires.
func NewProviderRecord(rng *rand.Rand, key []byte, p peer.ID, expires time.Time) store.ProviderRecord {
	return store.ProviderRecord{Key: key, Provider: p, Addrs: RandomAddrs(rng, rng.IntN(3)), Expires: expires}
}

// NewValueRecord returns a value record for key with a value of 0 to 32
// bytes drawn from rng.
func NewValueRecord(rng *rand.Rand, key []byte, publisher peer.ID, received, expires time.Time) store.ValueRecord {
	v := randomDigest(rng)[:rng.IntN(33)]
	return store.ValueRecord{Key: key, Value: v, Publisher: publisher, Received: received, Expires: expires}
}

// NewPeer returns the peer ID of a fresh Ed25519 key, the form of most peer
// IDs on the network (the public key is inlined in the ID).
func NewPeer(t testing.TB) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
