package ndjson_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"

	"github.com/kadstore/kadstore/internal/ndjson"
	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

func TestExportImportRoundTripsExactly(t *testing.T) {
	ctx := context.Background()
	src := memstore.New(store.Options{})
	defer src.Close()
	exp := time.Now().Add(time.Hour)
	for i := range 2500 { // more than one import batch and export page
		err := src.AddProviders(ctx, store.ProviderRecord{
			Key: []byte{byte(i >> 8), byte(i), 1}, Provider: storetest.NewPeer(t),
			Addrs:   []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.1/tcp/4001"), ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1")},
			Expires: exp,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := src.PutValue(ctx, store.ValueRecord{Key: []byte("/pk/a"), Value: []byte{0, 1, 2}, Publisher: storetest.NewPeer(t), Received: time.Now(), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := src.PutValue(ctx, store.ValueRecord{Key: []byte("/pk/b"), Value: []byte("x"), Received: time.Now(), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	var first bytes.Buffer
	var calls int
	n, err := ndjson.Export(ctx, src, &first, func(int64) { calls++ })
	if err != nil || n != 2502 || calls < 3 {
		t.Fatalf("export: %d records, %d progress calls, %v", n, calls, err)
	}

	dst := memstore.New(store.Options{})
	defer dst.Close()
	res, err := ndjson.Import(ctx, dst, bytes.NewReader(first.Bytes()), nil)
	if err != nil || res.Imported != 2502 || res.Skipped != 0 {
		t.Fatalf("import: %+v %v", res, err)
	}
	var second bytes.Buffer
	if _, err := ndjson.Export(ctx, dst, &second, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("export → import → export changed the file")
	}
}

func TestImportSkipsBadLinesAndKeepsTheRest(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(store.Options{})
	defer s.Close()
	p := storetest.NewPeer(t).String()
	exp := time.Now().Add(time.Hour).UnixMilli()
	past := time.Now().Add(-time.Hour).UnixMilli()
	lines := []string{
		`{"kind":"provider","key":"AQI=","provider":"` + p + `","expires_ms":` + itoa(exp) + `}`,
		`not json`,
		`{"kind":"provider","key":"AQM=","provider":"bogus","expires_ms":` + itoa(exp) + `}`,
		`{"kind":"provider","key":"AQQ=","provider":"` + p + `","expires_ms":` + itoa(past) + `}`,
		`{"kind":"provider","key":"AQU=","provider":"` + p + `","addrs":["/bad/addr"],"expires_ms":` + itoa(exp) + `}`,
		`{"kind":"mystery","key":"AQY="}`,
		``,
		`{"kind":"value","key":"L3BrL3g=","value":"eA==","expires_ms":` + itoa(exp) + `}`,
	}
	res, err := ndjson.Import(ctx, s, strings.NewReader(strings.Join(lines, "\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 2 || res.Skipped != 5 || len(res.Reasons) != 5 {
		t.Fatalf("%+v", res)
	}
	if !errors.Is(res.Reasons[0], ndjson.ErrBadLine) || !strings.Contains(res.Reasons[0].Error(), "line 2") {
		t.Fatalf("first reason %v", res.Reasons[0])
	}
	expired := 0
	for _, r := range res.Reasons {
		if errors.Is(r, store.ErrExpired) && strings.Contains(r.Error(), "line 4") {
			expired++
		}
	}
	if expired != 1 {
		t.Fatalf("the expired record on line 4 is not reported as such: %v", res.Reasons)
	}
	st, _ := s.Stats(ctx)
	if st.ProviderRecords != 1 || st.ValueRecords != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func itoa(n int64) string {
	return strconv.FormatInt(n, 10)
}

// A line carries the key as base64 (the stable field) and in its printed
// form (a CID, or the text); a line with the printed form in "key" imports
// too.
func TestKeysArePrintedAndOldBase64IsRead(t *testing.T) {
	ctx := context.Background()
	h, _ := mh.Sum([]byte("k"), mh.SHA2_256, -1)
	c := cid.NewCidV1(cid.Raw, h)
	s := memstore.New(store.Options{})
	defer s.Close()
	exp := time.Now().Add(time.Hour)
	p := storetest.NewPeer(t)
	if err := s.AddProviders(ctx, store.ProviderRecord{Key: h, Provider: p, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutValue(ctx, store.ValueRecord{Key: []byte("/v/name"), Value: []byte("x"), Received: time.Now(), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := ndjson.Export(ctx, s, &out, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"key":"` + base64.StdEncoding.EncodeToString(h) + `","key_text":"` + c.String() + `"`,
		`"key":"` + base64.StdEncoding.EncodeToString([]byte("/v/name")) + `","key_text":"/v/name"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %s in:\n%s", want, out.String())
		}
	}

	old := `{"kind":"provider","key":"` + c.String() + `","provider":"` + p.String() + `","expires_ms":` + strconv.FormatInt(exp.UnixMilli(), 10) + "}\n" +
		`{"kind":"value","key":"/v/name","value":"eA==","expires_ms":` + strconv.FormatInt(exp.UnixMilli(), 10) + "}\n"
	dst := memstore.New(store.Options{})
	defer dst.Close()
	res, err := ndjson.Import(ctx, dst, strings.NewReader(old), nil)
	if err != nil || res.Imported != 2 || res.Skipped != 0 {
		t.Fatalf("import of printed keys: %+v %v", res, err)
	}
	if provs, err := dst.Providers(ctx, h, 0); err != nil || len(provs) != 1 {
		t.Fatalf("provider of the old line: %v %v", provs, err)
	}
	if _, err := dst.GetValue(ctx, []byte("/v/name")); err != nil {
		t.Fatalf("value of the old line: %v", err)
	}
}
