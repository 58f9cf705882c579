package store

import (
	"context"
	"iter"
)

// Pages returns an iterator over the pages of a scan, starting at opts.After.
// It stops after the last page, or after yielding an error. Each page's Next
// is the cursor to resume from after a restart.
func Pages(ctx context.Context, s Store, opts ScanOptions) iter.Seq2[Page, error] {
	return func(yield func(Page, error) bool) {
		for {
			p, err := s.Scan(ctx, opts)
			if err != nil {
				yield(Page{}, err)
				return
			}
			if !yield(p, nil) || p.Next == nil {
				return
			}
			opts.After = p.Next
		}
	}
}

// ScanProviders returns an iterator over the provider records of a scan,
// fetched one page at a time. opts.Kind is set to Providers.
func ScanProviders(ctx context.Context, s Store, opts ScanOptions) iter.Seq2[ProviderRecord, error] {
	opts.Kind = Providers
	return func(yield func(ProviderRecord, error) bool) {
		for p, err := range Pages(ctx, s, opts) {
			if err != nil {
				yield(ProviderRecord{}, err)
				return
			}
			for _, r := range p.Providers {
				if !yield(r, nil) {
					return
				}
			}
		}
	}
}

// ScanValues returns an iterator over the value records of a scan, fetched one
// page at a time. opts.Kind is set to Values.
func ScanValues(ctx context.Context, s Store, opts ScanOptions) iter.Seq2[ValueRecord, error] {
	opts.Kind = Values
	return func(yield func(ValueRecord, error) bool) {
		for p, err := range Pages(ctx, s, opts) {
			if err != nil {
				yield(ValueRecord{}, err)
				return
			}
			for _, r := range p.Values {
				if !yield(r, nil) {
					return
				}
			}
		}
	}
}
