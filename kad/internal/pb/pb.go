// Package pb encodes and decodes the messages of the libp2p Kademlia protocol
// (/ipfs/kad/1.0.0): the Message protobuf of the libp2p Kademlia DHT
// specification, with the Record message of go-libp2p-record embedded, and the
// unsigned-varint length prefix that frames each message on a stream.
//
// The codec is written by hand on google.golang.org/protobuf/encoding/protowire
// rather than generated, so that it registers nothing in the global protobuf
// registry (go-libp2p-kad-dht registers the same message names, and both are
// linked into the interoperability tests), and so that decoding untrusted bytes
// has explicit bounds: a decoded message aliases the input buffer, keeps at most
// MaxPeers peers per repeated field and MaxAddrs addresses per peer, and never
// panics. Encoding follows protobuf-go's deterministic output (fields in number
// order, proto3 zero values omitted), so a message encodes to the same bytes as
// go-libp2p-kad-dht's pb package produces.
package pb

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// MessageType is the type of a Kademlia RPC.
type MessageType int32

// The message types of the specification.
const (
	PutValue     MessageType = 0
	GetValue     MessageType = 1
	AddProvider  MessageType = 2
	GetProviders MessageType = 3
	FindNode     MessageType = 4
	Ping         MessageType = 5
)

var typeNames = [...]string{"PUT_VALUE", "GET_VALUE", "ADD_PROVIDER", "GET_PROVIDERS", "FIND_NODE", "PING"}

// Known reports whether t is one of the six message types.
func (t MessageType) Known() bool { return t >= 0 && int(t) < len(typeNames) }

// String returns the specification's name of t, or "UNKNOWN".
func (t MessageType) String() string {
	if t.Known() {
		return typeNames[t]
	}
	return "UNKNOWN"
}

// ConnectionType tells a recipient how the sender is connected to a peer.
type ConnectionType int32

// The connection types of the specification.
const (
	NotConnected  ConnectionType = 0
	Connected     ConnectionType = 1
	CanConnect    ConnectionType = 2
	CannotConnect ConnectionType = 3
)

// Peer is Message.Peer: a peer ID and its multiaddrs, both as bytes.
type Peer struct {
	ID         []byte
	Addrs      [][]byte
	Connection ConnectionType
}

// Record is go-libp2p-record's Record: a key/value pair and the time the
// sender received it (RFC 3339, informational).
type Record struct {
	Key          []byte
	Value        []byte
	TimeReceived string
}

// Message is one Kademlia RPC request or response.
type Message struct {
	Type MessageType
	// ClusterLevelRaw is unused by the protocol; go-libp2p-kad-dht sends 1.
	ClusterLevelRaw int32
	Key             []byte
	// Record is nil when the message carries none.
	Record        *Record
	CloserPeers   []Peer
	ProviderPeers []Peer
}

// Decoding bounds for untrusted input. Entries past them are skipped.
const (
	// MaxPeers is the most peers decoded per repeated field. An honest peer
	// sends k (20) closer peers and a bounded number of providers.
	MaxPeers = 1024
	// MaxAddrs is the most addresses decoded per peer.
	MaxAddrs = 64
)

// ErrMalformed is returned (wrapped) for bytes that are not a valid message.
var ErrMalformed = errors.New("kad/pb: malformed message")

// Field numbers, from the specification's .proto.
const (
	fieldType         protowire.Number = 1
	fieldKey          protowire.Number = 2
	fieldRecord       protowire.Number = 3
	fieldCloserPeers  protowire.Number = 8
	fieldProviders    protowire.Number = 9
	fieldClusterLevel protowire.Number = 10

	fieldPeerID    protowire.Number = 1
	fieldPeerAddrs protowire.Number = 2
	fieldPeerConn  protowire.Number = 3

	fieldRecKey   protowire.Number = 1
	fieldRecValue protowire.Number = 2
	fieldRecTime  protowire.Number = 5
)

// Size returns the encoded size of m, without the length prefix.
func (m *Message) Size() int {
	n := 0
	if m.Type != 0 {
		n += protowire.SizeTag(fieldType) + protowire.SizeVarint(uint64(int64(m.Type)))
	}
	if len(m.Key) > 0 {
		n += protowire.SizeTag(fieldKey) + protowire.SizeBytes(len(m.Key))
	}
	if m.Record != nil {
		n += protowire.SizeTag(fieldRecord) + protowire.SizeBytes(m.Record.size())
	}
	for i := range m.CloserPeers {
		n += protowire.SizeTag(fieldCloserPeers) + protowire.SizeBytes(m.CloserPeers[i].size())
	}
	for i := range m.ProviderPeers {
		n += protowire.SizeTag(fieldProviders) + protowire.SizeBytes(m.ProviderPeers[i].size())
	}
	if m.ClusterLevelRaw != 0 {
		n += protowire.SizeTag(fieldClusterLevel) + protowire.SizeVarint(uint64(int64(m.ClusterLevelRaw)))
	}
	return n
}

// Append appends the encoding of m (without length prefix) to b.
func (m *Message) Append(b []byte) []byte {
	if m.Type != 0 {
		b = protowire.AppendTag(b, fieldType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.Type)))
	}
	if len(m.Key) > 0 {
		b = protowire.AppendTag(b, fieldKey, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Key)
	}
	if m.Record != nil {
		b = protowire.AppendTag(b, fieldRecord, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(m.Record.size()))
		b = m.Record.append(b)
	}
	for i := range m.CloserPeers {
		b = appendPeer(b, fieldCloserPeers, &m.CloserPeers[i])
	}
	for i := range m.ProviderPeers {
		b = appendPeer(b, fieldProviders, &m.ProviderPeers[i])
	}
	if m.ClusterLevelRaw != 0 {
		b = protowire.AppendTag(b, fieldClusterLevel, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.ClusterLevelRaw)))
	}
	return b
}

// Marshal returns the encoding of m, without length prefix.
func (m *Message) Marshal() []byte { return m.Append(make([]byte, 0, m.Size())) }

func appendPeer(b []byte, field protowire.Number, p *Peer) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(p.size()))
	if len(p.ID) > 0 {
		b = protowire.AppendTag(b, fieldPeerID, protowire.BytesType)
		b = protowire.AppendBytes(b, p.ID)
	}
	for _, a := range p.Addrs {
		b = protowire.AppendTag(b, fieldPeerAddrs, protowire.BytesType)
		b = protowire.AppendBytes(b, a)
	}
	if p.Connection != 0 {
		b = protowire.AppendTag(b, fieldPeerConn, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(p.Connection)))
	}
	return b
}

func (p *Peer) size() int {
	n := 0
	if len(p.ID) > 0 {
		n += protowire.SizeTag(fieldPeerID) + protowire.SizeBytes(len(p.ID))
	}
	for _, a := range p.Addrs {
		n += protowire.SizeTag(fieldPeerAddrs) + protowire.SizeBytes(len(a))
	}
	if p.Connection != 0 {
		n += protowire.SizeTag(fieldPeerConn) + protowire.SizeVarint(uint64(int64(p.Connection)))
	}
	return n
}

// PeerSize returns the bytes p adds to a message as one repeated entry.
func PeerSize(p *Peer) int {
	return protowire.SizeTag(fieldProviders) + protowire.SizeBytes(p.size())
}

func (r *Record) size() int {
	n := 0
	if len(r.Key) > 0 {
		n += protowire.SizeTag(fieldRecKey) + protowire.SizeBytes(len(r.Key))
	}
	if len(r.Value) > 0 {
		n += protowire.SizeTag(fieldRecValue) + protowire.SizeBytes(len(r.Value))
	}
	if len(r.TimeReceived) > 0 {
		n += protowire.SizeTag(fieldRecTime) + protowire.SizeBytes(len(r.TimeReceived))
	}
	return n
}

func (r *Record) append(b []byte) []byte {
	if len(r.Key) > 0 {
		b = protowire.AppendTag(b, fieldRecKey, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Key)
	}
	if len(r.Value) > 0 {
		b = protowire.AppendTag(b, fieldRecValue, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Value)
	}
	if len(r.TimeReceived) > 0 {
		b = protowire.AppendTag(b, fieldRecTime, protowire.BytesType)
		b = protowire.AppendString(b, r.TimeReceived)
	}
	return b
}

// Unmarshal decodes b into m, replacing its contents. The result aliases b.
// It follows protobuf's rules for untrusted input: unknown fields, and known
// fields of the wrong wire type, are skipped; a repeated scalar takes its last
// value; a repeated embedded Record is merged. Peers and addresses beyond
// MaxPeers and MaxAddrs are dropped.
func (m *Message) Unmarshal(b []byte) error {
	*m = Message{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldType && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: type: %v", ErrMalformed, protowire.ParseError(n))
			}
			m.Type, b = MessageType(int32(v)), b[n:]
		case num == fieldClusterLevel && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: cluster level: %v", ErrMalformed, protowire.ParseError(n))
			}
			m.ClusterLevelRaw, b = int32(v), b[n:]
		case num == fieldKey && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: key: %v", ErrMalformed, protowire.ParseError(n))
			}
			m.Key, b = v, b[n:]
		case num == fieldRecord && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: record: %v", ErrMalformed, protowire.ParseError(n))
			}
			if m.Record == nil {
				m.Record = &Record{}
			}
			if err := m.Record.merge(v); err != nil {
				return err
			}
			b = b[n:]
		case (num == fieldCloserPeers || num == fieldProviders) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: peer: %v", ErrMalformed, protowire.ParseError(n))
			}
			list := &m.CloserPeers
			if num == fieldProviders {
				list = &m.ProviderPeers
			}
			var p Peer
			if err := p.unmarshal(v); err != nil {
				return err
			}
			if len(*list) < MaxPeers {
				*list = append(*list, p)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

func (p *Peer) unmarshal(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: peer: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldPeerID && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: peer id: %v", ErrMalformed, protowire.ParseError(n))
			}
			p.ID, b = v, b[n:]
		case num == fieldPeerAddrs && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: peer addr: %v", ErrMalformed, protowire.ParseError(n))
			}
			if len(p.Addrs) < MaxAddrs {
				p.Addrs = append(p.Addrs, v)
			}
			b = b[n:]
		case num == fieldPeerConn && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: peer connection: %v", ErrMalformed, protowire.ParseError(n))
			}
			p.Connection, b = ConnectionType(int32(v)), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: peer field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

func (r *Record) merge(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: record: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldRecKey || num == fieldRecValue || num == fieldRecTime) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: record field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			switch num {
			case fieldRecKey:
				r.Key = v
			case fieldRecValue:
				r.Value = v
			default:
				r.TimeReceived = string(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("%w: record field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
