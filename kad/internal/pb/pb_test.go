package pb_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"google.golang.org/protobuf/proto"

	"github.com/kadstore/kadstore/kad/internal/pb"
)

func sample() *pb.Message {
	return &pb.Message{
		Type:            pb.GetProviders,
		ClusterLevelRaw: 1,
		Key:             []byte("key-bytes"),
		Record:          &pb.Record{Key: []byte("/pk/x"), Value: []byte("value"), TimeReceived: "2025-01-02T03:04:05Z"},
		CloserPeers: []pb.Peer{
			{ID: []byte("peer-1"), Addrs: [][]byte{[]byte("a1"), []byte("a2")}, Connection: pb.Connected},
			{ID: []byte("peer-2")},
		},
		ProviderPeers: []pb.Peer{{ID: []byte("prov"), Addrs: [][]byte{[]byte("pa")}, Connection: pb.CannotConnect}},
	}
}

func reference() *dhtpb.Message {
	return &dhtpb.Message{
		Type:            dhtpb.Message_GET_PROVIDERS,
		ClusterLevelRaw: 1,
		Key:             []byte("key-bytes"),
		Record:          &recpb.Record{Key: []byte("/pk/x"), Value: []byte("value"), TimeReceived: "2025-01-02T03:04:05Z"},
		CloserPeers: []*dhtpb.Message_Peer{
			{Id: []byte("peer-1"), Addrs: [][]byte{[]byte("a1"), []byte("a2")}, Connection: dhtpb.Message_CONNECTED},
			{Id: []byte("peer-2")},
		},
		ProviderPeers: []*dhtpb.Message_Peer{{Id: []byte("prov"), Addrs: [][]byte{[]byte("pa")}, Connection: dhtpb.Message_CANNOT_CONNECT}},
	}
}

// The encoding must be byte-identical to protobuf-go's deterministic output
// for go-libp2p-kad-dht's generated message, and each must decode the other.
func TestWireCompatibleWithGoLibp2pKadDHT(t *testing.T) {
	ours := sample().Marshal()
	theirs, err := proto.MarshalOptions{Deterministic: true}.Marshal(reference())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Fatalf("encodings differ:\n ours   %x\n theirs %x", ours, theirs)
	}
	var back dhtpb.Message
	if err := proto.Unmarshal(ours, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&back, reference()) {
		t.Fatalf("go-libp2p-kad-dht decoded %v", &back)
	}
	var m pb.Message
	if err := m.Unmarshal(theirs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Marshal(), ours) {
		t.Fatal("decode of reference bytes does not re-encode identically")
	}
}

func TestZeroValuesOmitted(t *testing.T) {
	for _, tc := range []struct {
		name string
		ours *pb.Message
		ref  *dhtpb.Message
	}{
		{"put with empty record", &pb.Message{Type: pb.PutValue, Record: &pb.Record{}}, &dhtpb.Message{Record: &recpb.Record{}}},
		{"ping", &pb.Message{Type: pb.Ping, ClusterLevelRaw: 1}, dhtpb.NewMessage(dhtpb.Message_PING, nil, 0)},
		{"empty", &pb.Message{}, &dhtpb.Message{}},
		{"negative type", &pb.Message{Type: -3}, &dhtpb.Message{Type: -3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theirs, err := proto.MarshalOptions{Deterministic: true}.Marshal(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.ours.Marshal(); !bytes.Equal(got, theirs) {
				t.Fatalf("ours %x, theirs %x", got, theirs)
			}
			if tc.ours.Size() != len(theirs) {
				t.Fatalf("Size %d, encoded %d", tc.ours.Size(), len(theirs))
			}
		})
	}
}

func TestUnmarshalSkipsUnknownAndWrongWireType(t *testing.T) {
	b := sample().Marshal()
	// Field 7 (unknown, varint), field 2 (key) sent as varint: both skipped.
	b = append(b, 7<<3|0, 42, 2<<3|0, 5)
	var m pb.Message
	if err := m.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if string(m.Key) != "key-bytes" || len(m.CloserPeers) != 2 || m.Record == nil || string(m.Record.Value) != "value" {
		t.Fatalf("decoded %+v", m)
	}
}

func TestUnmarshalMalformed(t *testing.T) {
	good := sample().Marshal()
	for _, b := range [][]byte{
		{0x0a},                   // key tag, no length
		{0x0a, 0x05, 'a'},        // key shorter than its length
		{0x42, 0x02, 0x0a, 0x09}, // peer with truncated id
		{0x80},                   // truncated tag
		good[:len(good)-1],
	} {
		var m pb.Message
		if err := m.Unmarshal(b); !errors.Is(err, pb.ErrMalformed) {
			t.Errorf("Unmarshal(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestUnmarshalBoundsPeers(t *testing.T) {
	m := &pb.Message{Type: pb.FindNode}
	for range pb.MaxPeers + 10 {
		m.CloserPeers = append(m.CloserPeers, pb.Peer{ID: []byte("p"), Addrs: make([][]byte, pb.MaxAddrs+5)})
	}
	for i := range m.CloserPeers[0].Addrs {
		m.CloserPeers[0].Addrs[i] = []byte("a")
	}
	var got pb.Message
	if err := got.Unmarshal(m.Marshal()); err != nil {
		t.Fatal(err)
	}
	if len(got.CloserPeers) != pb.MaxPeers || len(got.CloserPeers[0].Addrs) != pb.MaxAddrs {
		t.Fatalf("kept %d peers, %d addrs", len(got.CloserPeers), len(got.CloserPeers[0].Addrs))
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	msgs := []*pb.Message{sample(), {Type: pb.Ping, ClusterLevelRaw: 1}, {}}
	for _, m := range msgs {
		if err := pb.WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, m := range msgs {
		b, err := pb.ReadFrame(r, pb.MaxMessageSize)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(b, m.Marshal()) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if _, err := pb.ReadFrame(r, pb.MaxMessageSize); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"too large", []byte{0x81, 0x80, 0x80, 0x02}, pb.ErrTooLarge}, // 4 MiB + 1
		{"overflowing varint", bytes.Repeat([]byte{0xff}, 11), pb.ErrMalformed},
		{"truncated prefix", []byte{0x81}, io.ErrUnexpectedEOF},
		{"truncated body", []byte{0x05, 'a', 'b'}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pb.ReadFrame(bufio.NewReader(bytes.NewReader(tc.in)), pb.MaxMessageSize)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	big := &pb.Message{Key: []byte(strings.Repeat("k", pb.MaxMessageSize))}
	if err := pb.WriteFrame(io.Discard, big); !errors.Is(err, pb.ErrTooLarge) {
		t.Fatalf("WriteFrame of an oversized message: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(sample().Marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m pb.Message
		if err := m.Unmarshal(b); err != nil {
			return
		}
		// A decoded message re-encodes to bytes that decode to the same message.
		enc := m.Marshal()
		var again pb.Message
		if err := again.Unmarshal(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(again.Marshal(), enc) {
			t.Fatal("encoding not stable")
		}
	})
}
