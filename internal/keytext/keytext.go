// Package keytext gives record keys the one printed form every kadstore
// command prints and accepts (and the HTTP API's JSON carries as
// "key_text", beside the base64 "key"):
//
//   - a provider key (a multihash) is the CIDv1 of the raw codec, in base32:
//     bafkrei…, the form IPFS tools print, so `kadstore get` and
//     /routing/v1/providers/ take it as it is;
//   - a value key is its text form: /ipns/<name> with the name as a
//     libp2p-key CID (k51…), /pk/<peer ID>, and any other key that is
//     printable text starting with "/" as it is;
//   - any key with no such form (not a multihash, binary bytes after a
//     namespace) is "base64:" and its standard base64 encoding.
//
// Format and Parse round-trip exactly: Parse(Format(k)) is k for every key,
// which is what lets export → import → export reproduce a file.
package keytext

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// ErrBadKey is returned by Parse for text that is no key's form.
var ErrBadKey = errors.New("keytext: bad key")

// Base64Prefix starts the form of a key with no other text form.
const Base64Prefix = "base64:"

// Format returns the printed form of key.
func Format(key []byte) string {
	if s, ok := textForm(key); ok {
		if back, _, err := Parse(s); err == nil && bytes.Equal(back, key) {
			return s
		}
	}
	return Base64Prefix + base64.StdEncoding.EncodeToString(key)
}

// textForm proposes the key's readable form; Format checks it parses back.
func textForm(key []byte) (string, bool) {
	if len(key) == 0 {
		return "", false
	}
	if key[0] != '/' {
		if _, err := mh.Cast(key); err != nil {
			return "", false
		}
		return cid.NewCidV1(cid.Raw, key).String(), true
	}
	if bytes.HasPrefix(key, []byte(ipns.NamespacePrefix)) {
		if name, err := ipns.NameFromRoutingKey(key); err == nil {
			return ipns.NamespacePrefix + name.String(), true
		}
		return "", false
	}
	if rest, ok := bytes.CutPrefix(key, []byte("/pk/")); ok {
		if id, err := peer.IDFromBytes(rest); err == nil {
			return "/pk/" + id.String(), true
		}
	}
	if printable(key) {
		return string(key), true
	}
	return "", false
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// Parse returns the key a printed form names, and whether it is a value key
// (one that starts with "/"; a provider key is a multihash). It accepts
// what Format prints, and also a CID of any version, base or codec (its
// multihash is the key), an /ipns/ name in any form ipns.NameFromString
// takes (a peer ID, a CID), and the plain standard base64 of the key (the
// "key" field of export lines and of the API's JSON).
func Parse(s string) (key []byte, isValue bool, err error) {
	switch {
	case s == "":
		return nil, false, fmt.Errorf("%w: empty", ErrBadKey)
	case strings.HasPrefix(s, Base64Prefix):
		b, err := base64.StdEncoding.DecodeString(s[len(Base64Prefix):])
		if err != nil || len(b) == 0 {
			return nil, false, fmt.Errorf("%w: %q: bad base64", ErrBadKey, s)
		}
		return b, b[0] == '/', nil
	case strings.HasPrefix(s, ipns.NamespacePrefix):
		name, err := ipns.NameFromString(s)
		if err != nil {
			return nil, true, fmt.Errorf("%w: bad IPNS name %q: %v", ErrBadKey, s, err)
		}
		return name.RoutingKey(), true, nil
	case strings.HasPrefix(s, "/pk/"):
		if id, err := peer.Decode(s[len("/pk/"):]); err == nil {
			return append([]byte("/pk/"), id...), true, nil
		}
		return []byte(s), true, nil
	case strings.HasPrefix(s, "/"):
		return []byte(s), true, nil
	}
	c, err := cid.Decode(s)
	if err == nil {
		return c.Hash(), false, nil
	}
	// The base64 of the key's bytes, the "key" field of export lines and
	// the API's JSON. No CID is valid standard base64 (wrong length or
	// alphabet), so the forms do not overlap.
	if b, berr := base64.StdEncoding.DecodeString(s); berr == nil && len(b) > 0 {
		return b, b[0] == '/', nil
	}
	return nil, false, fmt.Errorf("%w: %q is not a CID, nor a /-prefixed value key, nor base64: %v", ErrBadKey, s, err)
}
