package record_test

import (
	"testing"

	"github.com/kadstore/kadstore/record"
)

// FuzzUnmarshal checks that decoding arbitrary bytes never panics, and that
// whatever decodes re-encodes to the same bytes (the codec is canonical).
func FuzzUnmarshal(f *testing.F) {
	f.Add(record.MarshalProvider(sampleProvider(f)))
	f.Add(record.MarshalValue(sampleValue(f)))
	f.Add([]byte{})
	f.Add([]byte{1, 'P', 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := record.UnmarshalProvider(b); err == nil {
			if again := record.MarshalProvider(p); string(again) != string(b) {
				t.Fatalf("provider re-encodes differently: %x vs %x", again, b)
			}
		}
		if v, err := record.UnmarshalValue(b); err == nil {
			if again := record.MarshalValue(v); string(again) != string(b) {
				t.Fatalf("value re-encodes differently: %x vs %x", again, b)
			}
		}
	})
}
