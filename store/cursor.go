package store

import (
	"bytes"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/record"
)

// Cursor is an opaque scan position. It names the last position a page covered
// (a Kademlia key, and for provider scans a provider), not a backend's internal
// state, so it stays valid across restarts, compactions and backends.
type Cursor []byte

const cursorVersion = 1

// Position is a place in scan order: a Kademlia key and, for provider records,
// a provider ID.
type Position struct {
	Key      record.KadKey
	Provider peer.ID
}

// Compare orders positions by Kademlia key, then provider ID bytes.
func (p Position) Compare(o Position) int {
	if c := bytes.Compare(p.Key[:], o.Key[:]); c != 0 {
		return c
	}
	return bytes.Compare([]byte(p.Provider), []byte(o.Provider))
}

// NewCursor encodes a position of the given kind as a cursor. Backends use it
// to fill Page.Next with the position of the last record they considered.
func NewCursor(kind Kind, pos Position) Cursor {
	c := make([]byte, 0, 2+record.KadKeySize+len(pos.Provider))
	c = append(c, cursorVersion, byte(kind))
	c = append(c, pos.Key[:]...)
	if kind == Providers {
		c = append(c, pos.Provider...)
	}
	return c
}

// Decode returns the position encoded in c, checking it belongs to a scan of
// the given kind. It returns an error matching ErrBadCursor otherwise.
func (c Cursor) Decode(kind Kind) (Position, error) {
	var pos Position
	if len(c) < 2+record.KadKeySize || c[0] != cursorVersion {
		return pos, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	if Kind(c[1]) != kind {
		return pos, fmt.Errorf("%w: cursor of a %v scan used for %v", ErrBadCursor, Kind(c[1]), kind)
	}
	copy(pos.Key[:], c[2:2+record.KadKeySize])
	rest := c[2+record.KadKeySize:]
	switch {
	case kind == Values && len(rest) != 0:
		return pos, fmt.Errorf("%w: malformed", ErrBadCursor)
	case kind == Providers && len(rest) > 0:
		id, err := peer.IDFromBytes(rest)
		if err != nil {
			return pos, fmt.Errorf("%w: provider: %v", ErrBadCursor, err)
		}
		pos.Provider = id
	}
	return pos, nil
}
