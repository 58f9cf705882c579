package dsimport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-base32"

	"github.com/kadstore/kadstore/store"
)

// Errors. Those about the directory come from Detect and Import before any
// record is read; ErrBadEntry is wrapped by the Result.Examples of skipped
// entries.
var (
	// ErrUnknownFormat is returned for a directory that holds neither a
	// LevelDB nor a Pebble store (nor a Kubo repository with one).
	ErrUnknownFormat = errors.New("dsimport: not a LevelDB or Pebble datastore")
	// ErrUnsupportedFormat is returned for a store this build cannot read: a
	// Badger datastore, or a Pebble store in a format major version outside
	// what pebble v2 reads.
	ErrUnsupportedFormat = errors.New("dsimport: unsupported datastore format")
	// ErrLocked is returned when another process (a running node) holds the
	// store open.
	ErrLocked = errors.New("dsimport: datastore is in use by another process (stop the node, or import from a copy)")
	// ErrBadEntry is wrapped by the reports of datastore entries that are
	// not valid provider records.
	ErrBadEntry = errors.New("dsimport: bad entry")
)

// Reasons an entry is skipped: the keys of Result.Reasons.
const (
	// ReasonNotProvider: a key under the prefix that is not
	// <prefix><multihash>/<peer ID>.
	ReasonNotProvider = "not a provider key"
	// ReasonBadKey: the content key is not base32, is empty, or the store
	// refuses it (too large).
	ReasonBadKey = "bad key"
	// ReasonBadPeer: the peer ID is not base32 or not a valid peer ID.
	ReasonBadPeer = "bad peer ID"
	// ReasonBadValue: the value is not a varint timestamp.
	ReasonBadValue = "bad value"
	// ReasonExpired: added time + TTL is not after now.
	ReasonExpired = "expired"
	// ReasonTTLTooLong: the store refuses the expiry as beyond its MaxTTL
	// (Options.TTL is longer than the store's MaxTTL).
	ReasonTTLTooLong = "ttl beyond store limit"
	// ReasonTooManyProviders: the key already has the store's
	// MaxProvidersPerKey providers.
	ReasonTooManyProviders = "too many providers for key"
	// ReasonProviderFull: the provider already has the store's
	// MaxRecordsPerProvider records.
	ReasonProviderFull = "too many records for provider"
)

// Defaults.
const (
	// DefaultTTL is the provide validity of go-libp2p-kad-dht
	// (amino.DefaultProvideValidity): a record lives this long after it was
	// added.
	DefaultTTL = 48 * time.Hour
	// DefaultBatchSize is the number of records per AddProviders call.
	DefaultBatchSize = 1000
	// DefaultPrefix is go-libp2p-kad-dht's records.ProvidersKeyPrefix.
	DefaultPrefix = "/providers/"
	// MaxExamples bounds Result.Examples.
	MaxExamples = 20
)

// Options configure Import. The zero value of each field means its default.
type Options struct {
	// TTL is how long a record lives after the time the datastore says it
	// was added. Default DefaultTTL (48 h). It must not exceed the
	// destination store's MaxTTL, or recently added records are refused
	// (ReasonTTLTooLong).
	TTL time.Duration
	// Now is the clock that decides expiry. Default time.Now. It should be
	// the destination store's clock.
	Now func() time.Time
	// Progress, if set, is called after each batch (and every BatchSize
	// skipped entries) with the records imported and the entries skipped so
	// far. It runs on Import's goroutine.
	Progress func(done, skipped int64)
	// BatchSize is the number of records per AddProviders call. Default
	// DefaultBatchSize (1000).
	BatchSize int
	// Prefix is the datastore key prefix under which the provider records
	// live. Default DefaultPrefix, "/providers/", where go-libp2p-kad-dht and
	// Kubo put them. An application that wrapped its datastore in a namespace
	// gives that namespace first, e.g. "/dht/providers/". Only keys under the
	// prefix are read. A missing trailing slash is added.
	Prefix string
	// Logger receives pebble's messages. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) ensureDefaults() {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Result counts what Import did.
type Result struct {
	// Dir is the store directory read: the directory given, or the
	// datastore/ or pebbleds/ directory of the Kubo repository given.
	Dir string
	// Format is the format of the store read.
	Format Format
	// Imported counts the records stored.
	Imported int64
	// Clamped counts the imported records whose added time lay in the future
	// (the writer's clock was ahead); their expiry is now + TTL.
	Clamped int64
	// Skipped counts the entries under the prefix that were not imported;
	// Reasons breaks it down by reason (the Reason* constants).
	Skipped int64
	Reasons map[string]int64
	// Examples reports the first MaxExamples skipped entries, each naming
	// its datastore key and wrapping ErrBadEntry or the store's error.
	Examples []error
}

// Import reads the provider records of the go-libp2p-kad-dht datastore in dir
// (a LevelDB or Pebble store, or a Kubo repository holding one; see Detect)
// and stores them in dst, without addresses, expiring at added time + TTL.
// The datastore is opened read-only and never modified.
//
// Entries that are not valid provider records, records already expired, and
// records dst refuses as input or for a per-key or per-provider limit are
// skipped and counted; Import stops early only on an error of dst itself (such
// as store.ErrStoreFull), an unreadable datastore, or ctx. The Result counts
// what was done up to that point either way.
func Import(ctx context.Context, dir string, dst store.Store, opts Options) (Result, error) {
	opts.ensureDefaults()
	path, format, err := Detect(dir)
	if err != nil {
		return Result{}, err
	}
	im := &importer{
		dst:    dst,
		opts:   opts,
		prefix: []byte(opts.Prefix),
		res:    Result{Dir: path, Format: format, Reasons: map[string]int64{}},
	}
	src, err := openSource(path, format, opts.Logger)
	if err != nil {
		return im.res, err
	}
	err = src.scan(ctx, im.prefix, im.entry)
	if err == nil {
		err = im.flush(ctx)
	}
	if cerr := src.close(); err == nil && cerr != nil {
		err = fmt.Errorf("dsimport: closing %s: %w", path, cerr)
	}
	im.progress()
	return im.res, err
}

// source is an open datastore, read in key order.
type source interface {
	// scan calls fn for every entry whose key starts with prefix, in key
	// order, until fn returns an error. k and v are valid only during the
	// call. It checks ctx between entries.
	scan(ctx context.Context, prefix []byte, fn func(ctx context.Context, k, v []byte) error) error
	close() error
}

func openSource(dir string, f Format, log *slog.Logger) (source, error) {
	switch f {
	case LevelDB:
		return openLevelDB(dir)
	case Pebble:
		return openPebble(dir, log)
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedFormat, f)
	}
}

// importer holds one batch of records on their way to the store.
type importer struct {
	dst    store.Store
	opts   Options
	prefix []byte
	res    Result

	recs    []store.ProviderRecord
	clamped []bool
}

// entry handles one datastore entry: a record joins the batch, anything else
// is counted as skipped.
func (im *importer) entry(ctx context.Context, k, v []byte) error {
	rec, clamped, reason, err := im.parse(k, v)
	if reason != "" {
		im.skip(reason, func() error { return fmt.Errorf("%w: %q: %s: %w", ErrBadEntry, k, reason, err) })
		return nil
	}
	im.recs = append(im.recs, rec)
	im.clamped = append(im.clamped, clamped)
	if len(im.recs) >= im.opts.BatchSize {
		return im.flush(ctx)
	}
	return nil
}

var (
	errShape   = errors.New("want <prefix><base32 multihash>/<base32 peer ID>")
	errEmpty   = errors.New("empty")
	errVarint  = errors.New("not a varint")
	errExpired = errors.New("expired")
)

// parse decodes one entry. A non-empty reason says why it is skipped, and err
// gives the detail.
func (im *importer) parse(k, v []byte) (rec store.ProviderRecord, clamped bool, reason string, err error) {
	rest := k[len(im.prefix):]
	i := bytes.IndexByte(rest, '/')
	if i < 0 || bytes.IndexByte(rest[i+1:], '/') >= 0 {
		return rec, false, ReasonNotProvider, errShape
	}
	key, err := decodeBase32(rest[:i])
	if err != nil {
		return rec, false, ReasonBadKey, err
	}
	pid, err := decodeBase32(rest[i+1:])
	if err != nil {
		return rec, false, ReasonBadPeer, err
	}
	p, err := peer.IDFromBytes(pid)
	if err != nil {
		return rec, false, ReasonBadPeer, err
	}
	nsec, n := binary.Varint(v)
	if n <= 0 {
		return rec, false, ReasonBadValue, fmt.Errorf("%w: %x", errVarint, v)
	}
	added, now := time.Unix(0, nsec), im.opts.Now()
	expires := added.Add(im.opts.TTL)
	if added.After(now) {
		// The writer's clock was ahead of ours: trusting it would keep the
		// record longer than the validity allows.
		expires, clamped = now.Add(im.opts.TTL), true
	}
	if !expires.After(now) {
		return rec, false, ReasonExpired, fmt.Errorf("%w: added %v, expired %v", errExpired, added.UTC(), expires.UTC())
	}
	return store.ProviderRecord{Key: key, Provider: p, Expires: expires}, clamped, "", nil
}

func decodeBase32(src []byte) ([]byte, error) {
	if len(src) == 0 {
		return nil, errEmpty
	}
	dst := make([]byte, base32.RawStdEncoding.DecodedLen(len(src)))
	n, err := base32.RawStdEncoding.Decode(dst, src)
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}

// flush stores the batch. A batch the store refuses because of one record is
// stored again one record at a time, so that only the bad ones are skipped.
func (im *importer) flush(ctx context.Context) error {
	if len(im.recs) == 0 {
		return nil
	}
	err := im.dst.AddProviders(ctx, im.recs...)
	if err != nil && storeReason(err) == "" {
		return fmt.Errorf("dsimport: store: %w", err)
	}
	if err == nil {
		im.res.Imported += int64(len(im.recs))
		for _, c := range im.clamped {
			if c {
				im.res.Clamped++
			}
		}
	} else {
		for i, rec := range im.recs {
			if err := im.dst.AddProviders(ctx, rec); err != nil {
				reason := storeReason(err)
				if reason == "" {
					return fmt.Errorf("dsimport: store: %w", err)
				}
				im.skip(reason, func() error { return fmt.Errorf("%s: %w", im.dsKey(rec), err) })
				continue
			}
			im.res.Imported++
			if im.clamped[i] {
				im.res.Clamped++
			}
		}
	}
	clear(im.recs) // drop the keys for the garbage collector
	im.recs, im.clamped = im.recs[:0], im.clamped[:0]
	im.progress()
	return nil
}

// skip counts a skipped entry; report builds its error, only while Examples
// has room (an old datastore may hold millions of expired entries).
func (im *importer) skip(reason string, report func() error) {
	im.res.Skipped++
	im.res.Reasons[reason]++
	if len(im.res.Examples) < MaxExamples {
		im.res.Examples = append(im.res.Examples, report())
	}
	if im.res.Skipped%int64(im.opts.BatchSize) == 0 {
		im.progress()
	}
}

func (im *importer) progress() {
	if im.opts.Progress != nil {
		im.opts.Progress(im.res.Imported, im.res.Skipped)
	}
}

// dsKey returns the datastore key of a record, to name it in reports.
func (im *importer) dsKey(r store.ProviderRecord) string {
	return im.opts.Prefix + base32.RawStdEncoding.EncodeToString(r.Key) + "/" + base32.RawStdEncoding.EncodeToString([]byte(r.Provider))
}

// storeReason returns the reason for a store error about one record, or ""
// for an error of the store itself, which stops the import.
func storeReason(err error) string {
	for _, e := range []struct {
		err    error
		reason string
	}{
		{store.ErrExpired, ReasonExpired},
		{store.ErrTTLTooLong, ReasonTTLTooLong},
		{store.ErrEmptyKey, ReasonBadKey},
		{store.ErrKeyTooLarge, ReasonBadKey},
		{store.ErrInvalidPeer, ReasonBadPeer},
		{store.ErrTooManyProviders, ReasonTooManyProviders},
		{store.ErrProviderFull, ReasonProviderFull},
	} {
		if errors.Is(err, e.err) {
			return e.reason
		}
	}
	return ""
}
