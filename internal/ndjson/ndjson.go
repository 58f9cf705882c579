// Package ndjson reads and writes kadstore records as newline-delimited JSON,
// one record a line, the interchange format of `kadstore export` and
// `kadstore import`.
//
// A line is one of
//
//	{"kind":"provider","key":"EiD…","key_text":"bafkrei…","provider":"<peer ID>","addrs":["/ip4/…"],"expires_ms":1700000000000}
//	{"kind":"value","key":"L2lwbnMv…","key_text":"/ipns/k51…","value":"<base64>","publisher":"<peer ID>","received_ms":…,"expires_ms":…}
//
// "key" is the key's bytes in standard base64, as every version wrote it and
// every reader of the format (scripts, the HTTP API's clients) parses it;
// "key_text" is its printed form (internal/keytext: the CID of a provider
// key, the text of a value key), the one the commands print and accept.
// Import reads "key" in either form and ignores "key_text".
//
// Times are Unix milliseconds, the store's own resolution, so export → import →
// export reproduces a file byte for byte. Export walks the store through paged
// scans (one page in memory at a time); Import writes in batches and reports
// each line it skipped, and why, without stopping.
package ndjson

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kadstore/kadstore/internal/keytext"
	"github.com/kadstore/kadstore/store"
)

// ErrBadLine is wrapped by the errors reported for lines Import skips.
var ErrBadLine = errors.New("ndjson: bad line")

// MaxLine is the longest line Import accepts (a 64 KiB value in base64 plus the
// rest of the record fits with room to spare).
const MaxLine = 1 << 20

// Line is the JSON form of one record.
type Line struct {
	Kind       string   `json:"kind"`
	Key        Key      `json:"key"`
	KeyText    string   `json:"key_text,omitempty"`
	Provider   string   `json:"provider,omitempty"`
	Addrs      []string `json:"addrs,omitempty"`
	Value      []byte   `json:"value,omitempty"`
	Publisher  string   `json:"publisher,omitempty"`
	ReceivedMs int64    `json:"received_ms,omitempty"`
	ExpiresMs  int64    `json:"expires_ms"`
}

// Key is a record key; in JSON it is its bytes in standard base64 (the
// format's stable field), and it reads the printed form too.
type Key []byte

// String is the printed form.
func (k Key) String() string { return keytext.Format(k) }

// MarshalText writes the key's bytes in standard base64.
func (k Key) MarshalText() ([]byte, error) {
	return []byte(base64.StdEncoding.EncodeToString(k)), nil
}

// UnmarshalText reads the printed form (keytext.Format), or the standard
// base64 that MarshalText writes.
func (k *Key) UnmarshalText(b []byte) error {
	s := string(b)
	key, _, perr := keytext.Parse(s)
	if perr == nil && keytext.Format(key) == s {
		*k = key
		return nil
	}
	if old, err := base64.StdEncoding.DecodeString(s); err == nil && len(old) > 0 {
		*k = old
		return nil
	}
	if perr != nil {
		return fmt.Errorf("%w: key: %v", ErrBadLine, perr)
	}
	*k = key // a key in another form keytext.Parse takes (a CIDv0, …)
	return nil
}

// Kinds of line.
const (
	KindProvider = "provider"
	KindValue    = "value"
)

// FromProvider returns the line of a provider record.
func FromProvider(r store.ProviderRecord) Line {
	l := Line{Kind: KindProvider, Key: r.Key, KeyText: keytext.Format(r.Key), Provider: r.Provider.String(), ExpiresMs: r.Expires.UnixMilli()}
	for _, a := range r.Addrs {
		l.Addrs = append(l.Addrs, a.String())
	}
	return l
}

// FromValue returns the line of a value record.
func FromValue(r store.ValueRecord) Line {
	l := Line{Kind: KindValue, Key: r.Key, KeyText: keytext.Format(r.Key), Value: r.Value, ReceivedMs: r.Received.UnixMilli(), ExpiresMs: r.Expires.UnixMilli()}
	if r.Publisher != "" {
		l.Publisher = r.Publisher.String()
	}
	return l
}

// ProviderRecord converts a provider line back to a record.
func (l Line) ProviderRecord() (store.ProviderRecord, error) {
	if l.Kind != KindProvider {
		return store.ProviderRecord{}, fmt.Errorf("%w: kind %q is not %q", ErrBadLine, l.Kind, KindProvider)
	}
	id, err := peer.Decode(l.Provider)
	if err != nil {
		return store.ProviderRecord{}, fmt.Errorf("%w: provider: %v", ErrBadLine, err)
	}
	r := store.ProviderRecord{Key: []byte(l.Key), Provider: id, Expires: time.UnixMilli(l.ExpiresMs)}
	for _, s := range l.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return store.ProviderRecord{}, fmt.Errorf("%w: address %q: %v", ErrBadLine, s, err)
		}
		r.Addrs = append(r.Addrs, a)
	}
	return r, nil
}

// ValueRecord converts a value line back to a record.
func (l Line) ValueRecord() (store.ValueRecord, error) {
	if l.Kind != KindValue {
		return store.ValueRecord{}, fmt.Errorf("%w: kind %q is not %q", ErrBadLine, l.Kind, KindValue)
	}
	r := store.ValueRecord{Key: []byte(l.Key), Value: l.Value, Received: time.UnixMilli(l.ReceivedMs), Expires: time.UnixMilli(l.ExpiresMs)}
	if l.Publisher != "" {
		id, err := peer.Decode(l.Publisher)
		if err != nil {
			return store.ValueRecord{}, fmt.Errorf("%w: publisher: %v", ErrBadLine, err)
		}
		r.Publisher = id
	}
	return r, nil
}

// Progress is called after each page or batch with the records done so far.
type Progress func(done int64)

// Export writes every live record of the given kinds (both when kinds is
// empty) to w, in scan order, and returns how many it wrote. Records the
// store could not read (Page.Skipped) do not stop it: it writes the rest and
// then returns an error matching ErrIncomplete.
func Export(ctx context.Context, s store.Store, w io.Writer, progress Progress, kinds ...store.Kind) (int64, error) {
	if len(kinds) == 0 {
		kinds = []store.Kind{store.Providers, store.Values}
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var n, skipped int64
	for _, kind := range kinds {
		for page, err := range store.Pages(ctx, s, store.ScanOptions{Kind: kind, Limit: 1000}) {
			if err != nil {
				return n, err
			}
			skipped += int64(page.Skipped)
			for _, r := range page.Providers {
				if err := enc.Encode(FromProvider(r)); err != nil {
					return n, err
				}
				n++
			}
			for _, r := range page.Values {
				if err := enc.Encode(FromValue(r)); err != nil {
					return n, err
				}
				n++
			}
			if progress != nil {
				progress(n)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	return n, Incomplete(skipped)
}

// ErrIncomplete is returned by Export, after it wrote every record it could
// read, when the store could not read some (damaged data, see kadstore check).
var ErrIncomplete = errors.New("ndjson: export incomplete")

// Incomplete returns the error of an export that skipped records (or damaged
// ranges), or nil if skipped is 0.
func Incomplete(skipped int64) error {
	if skipped == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d damaged records or key ranges could not be read (run kadstore check)", ErrIncomplete, skipped)
}

// ImportResult counts what Import did.
type ImportResult struct {
	Imported int64
	// Skipped lines, with the reason for each of the first MaxReasons.
	Skipped int64
	Reasons []error
}

// MaxReasons bounds ImportResult.Reasons.
const MaxReasons = 100

// Import reads lines from r and stores them in batches. Lines that do not
// parse, or records the store refuses (expired, too large, …), are skipped and
// reported; Import stops early only on a store failure or ctx.
func Import(ctx context.Context, s store.Store, r io.Reader, progress Progress) (ImportResult, error) {
	var res ImportResult
	skip := func(lineNo int64, err error) {
		res.Skipped++
		if len(res.Reasons) < MaxReasons {
			res.Reasons = append(res.Reasons, fmt.Errorf("line %d: %w", lineNo, err))
		}
	}
	const batchSize = 1000
	batch := make([]store.ProviderRecord, 0, batchSize)
	batchLines := make([]int64, 0, batchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.AddProviders(ctx, batch...)
		if err != nil && !isRecordError(err) {
			return err
		}
		if err != nil {
			// One bad record spoils an atomic batch: store the records one
			// at a time so only the bad ones are skipped.
			for i, rec := range batch {
				if err := s.AddProviders(ctx, rec); err != nil {
					if !isRecordError(err) {
						return err
					}
					skip(batchLines[i], err)
					continue
				}
				res.Imported++
			}
		} else {
			res.Imported += int64(len(batch))
		}
		batch, batchLines = batch[:0], batchLines[:0]
		if progress != nil {
			progress(res.Imported)
		}
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	var lineNo int64
	for sc.Scan() {
		lineNo++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l Line
		if err := json.Unmarshal(b, &l); err != nil {
			skip(lineNo, fmt.Errorf("%w: %v", ErrBadLine, err))
			continue
		}
		switch l.Kind {
		case KindProvider:
			rec, err := l.ProviderRecord()
			if err != nil {
				skip(lineNo, err)
				continue
			}
			batch = append(batch, rec)
			batchLines = append(batchLines, lineNo)
			if len(batch) == batchSize {
				if err := flush(); err != nil {
					return res, err
				}
			}
		case KindValue:
			rec, err := l.ValueRecord()
			if err != nil {
				skip(lineNo, err)
				continue
			}
			if err := s.PutValue(ctx, rec); err != nil {
				if !isRecordError(err) {
					return res, err
				}
				skip(lineNo, err)
				continue
			}
			res.Imported++
		default:
			skip(lineNo, fmt.Errorf("%w: unknown kind %q", ErrBadLine, l.Kind))
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("ndjson: line %d: %w", lineNo+1, err)
	}
	return res, flush()
}

// isRecordError reports whether err is about the record itself (so the record
// is skipped) rather than about the store (so the import stops): a store
// rejection, except a full store, which every later record would meet too.
func isRecordError(err error) bool {
	return store.IsRejection(err) && !errors.Is(err, store.ErrStoreFull)
}
