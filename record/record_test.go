package record_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/record"
	"github.com/kadstore/kadstore/store/storetest"
)

func sampleProvider(t testing.TB) record.ProviderRecord {
	return record.ProviderRecord{
		Key:      append([]byte{0x12, 0x20}, bytes.Repeat([]byte{7}, 32)...),
		Provider: storetest.NewPeer(t),
		Addrs: []ma.Multiaddr{
			ma.StringCast("/ip4/192.0.2.1/tcp/4001"),
			ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1"),
		},
		Expires: time.UnixMilli(1_790_000_000_123),
	}
}

func sampleValue(t testing.TB) record.ValueRecord {
	return record.ValueRecord{
		Key:       []byte("/pk/some-key"),
		Value:     []byte("the value"),
		Publisher: storetest.NewPeer(t),
		Received:  time.UnixMilli(1_790_000_000_000),
		Expires:   time.UnixMilli(1_790_172_800_000),
	}
}

func TestProviderRoundTrip(t *testing.T) {
	cases := map[string]func(*record.ProviderRecord){
		"full":      func(*record.ProviderRecord) {},
		"no addrs":  func(r *record.ProviderRecord) { r.Addrs = nil },
		"one addr":  func(r *record.ProviderRecord) { r.Addrs = r.Addrs[:1] },
		"long key":  func(r *record.ProviderRecord) { r.Key = bytes.Repeat([]byte{1}, 1000) },
		"pre-epoch": func(r *record.ProviderRecord) { r.Expires = time.UnixMilli(-5) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			in := sampleProvider(t)
			mutate(&in)
			out, err := record.UnmarshalProvider(record.MarshalProvider(in))
			if err != nil {
				t.Fatal(err)
			}
			if !in.Equal(out) {
				t.Fatalf("round trip changed the record:\n in %+v\nout %+v", in, out)
			}
		})
	}
}

func TestValueRoundTrip(t *testing.T) {
	cases := map[string]func(*record.ValueRecord){
		"full":         func(*record.ValueRecord) {},
		"no publisher": func(r *record.ValueRecord) { r.Publisher = "" },
		"empty value":  func(r *record.ValueRecord) { r.Value = nil },
		"big value":    func(r *record.ValueRecord) { r.Value = bytes.Repeat([]byte{9}, 64<<10) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			in := sampleValue(t)
			mutate(&in)
			out, err := record.UnmarshalValue(record.MarshalValue(in))
			if err != nil {
				t.Fatal(err)
			}
			if !in.Equal(out) {
				t.Fatalf("round trip changed the record:\n in %+v\nout %+v", in, out)
			}
		})
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	r := sampleProvider(t)
	buf := record.AppendProvider([]byte("prefix"), r)
	if !bytes.HasPrefix(buf, []byte("prefix")) {
		t.Fatal("prefix overwritten")
	}
	out, err := record.UnmarshalProvider(buf[len("prefix"):])
	if err != nil || !out.Equal(r) {
		t.Fatalf("decode after prefix: %v", err)
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	good := record.MarshalProvider(sampleProvider(t))
	// Every truncation fails.
	for n := 0; n < len(good); n++ {
		if _, err := record.UnmarshalProvider(good[:n]); !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: err = %v, want ErrCorrupt", n, err)
		}
	}
	// Every single-bit flip fails (the checksum catches it, or the version).
	for i := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			_, err := record.UnmarshalProvider(b)
			if !errors.Is(err, record.ErrCorrupt) && !errors.Is(err, record.ErrVersion) {
				t.Fatalf("flip byte %d bit %d: err = %v", i, bit, err)
			}
		}
	}
	// Trailing bytes fail.
	if _, err := record.UnmarshalProvider(append(bytes.Clone(good), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	// A value record is not a provider record and the other way round.
	if _, err := record.UnmarshalProvider(record.MarshalValue(sampleValue(t))); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("value decoded as provider: %v", err)
	}
	if _, err := record.UnmarshalValue(good); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("provider decoded as value: %v", err)
	}
}

func TestDecodeUnknownVersion(t *testing.T) {
	b := record.MarshalValue(sampleValue(t))
	b[0] = 99
	if _, err := record.UnmarshalValue(b); !errors.Is(err, record.ErrVersion) {
		t.Fatalf("err = %v, want ErrVersion", err)
	}
}
