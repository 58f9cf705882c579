package keytext_test

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/internal/keytext"
)

func TestFormatParse(t *testing.T) {
	h, _ := mh.Sum([]byte("content"), mh.SHA2_256, -1)
	_, pub, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPublicKey(pub)
	name := ipns.NameFromPeer(id)
	for _, tc := range []struct {
		name    string
		key     []byte
		prefix  string // of the printed form
		isValue bool
	}{
		{"provider", h, "bafkrei", false},
		{"ipns", name.RoutingKey(), "/ipns/k51", true},
		{"pk", append([]byte("/pk/"), id...), "/pk/12D3Koo", true},
		{"text value", []byte("/v/hello"), "/v/hello", true},
		{"binary value", []byte("/v/\x00\xff"), "base64:", true},
		{"ipns, not a peer ID", []byte("/ipns/nonsense"), "base64:", true},
		{"pk, not a peer ID", []byte("/pk/" + id.String()), "base64:", true},
		{"not a multihash", []byte{0xff, 0xff, 0xff}, "base64:", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := keytext.Format(tc.key)
			if !strings.HasPrefix(s, tc.prefix) {
				t.Errorf("Format = %q, want prefix %q", s, tc.prefix)
			}
			back, isValue, err := keytext.Parse(s)
			if err != nil || !bytes.Equal(back, tc.key) || isValue != tc.isValue {
				t.Errorf("Parse(%q) = %x, %v, %v; want %x, %v", s, back, isValue, err, tc.key, tc.isValue)
			}
		})
	}
}

func TestParseAcceptsOtherForms(t *testing.T) {
	h, _ := mh.Sum([]byte("content"), mh.SHA2_256, -1)
	b58, err := cid.NewCidV1(cid.Raw, h).StringOfBase('z')
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cid.NewCidV0(h).String(), cid.NewCidV1(cid.DagProtobuf, h).String(), b58} {
		key, isValue, err := keytext.Parse(s)
		if err != nil || isValue || !bytes.Equal(key, h) {
			t.Errorf("Parse(%q) = %x, %v, %v", s, key, isValue, err)
		}
	}
	for _, bad := range []string{"", "not-a-cid", "base64:!!", "/ipns/nonsense"} {
		if _, _, err := keytext.Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}
