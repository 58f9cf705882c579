package storetest

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/kadstore/kadstore/store"
)

// Names of the store methods, as FailStore passes them to Fail.
const (
	OpPutValue       = "PutValue"
	OpGetValue       = "GetValue"
	OpDeleteValue    = "DeleteValue"
	OpAddProviders   = "AddProviders"
	OpProviders      = "Providers"
	OpRemoveProvider = "RemoveProvider"
	OpScan           = "Scan"
	OpExpire         = "Expire"
	OpStats          = "Stats"
)

// FailStore wraps a store with a fault hook, after go-datastore's
// failstore: each method but Close first calls Fail with the method's name,
// and returns the error Fail returns instead of calling the store. Fail may
// also block (a slow disk that ignores the context) or panic (a backend
// bug). Tests of the layers above a store share it rather than each writing
// its own wrapper. A nil Fail never fails.
type FailStore struct {
	store.Store
	Fail func(ctx context.Context, op string) error
}

func (f *FailStore) fail(ctx context.Context, op string) error {
	if f.Fail == nil {
		return nil
	}
	return f.Fail(ctx, op)
}

func (f *FailStore) PutValue(ctx context.Context, r store.ValueRecord) error {
	if err := f.fail(ctx, OpPutValue); err != nil {
		return err
	}
	return f.Store.PutValue(ctx, r)
}

func (f *FailStore) GetValue(ctx context.Context, key []byte) (store.ValueRecord, error) {
	if err := f.fail(ctx, OpGetValue); err != nil {
		return store.ValueRecord{}, err
	}
	return f.Store.GetValue(ctx, key)
}

func (f *FailStore) DeleteValue(ctx context.Context, key []byte) error {
	if err := f.fail(ctx, OpDeleteValue); err != nil {
		return err
	}
	return f.Store.DeleteValue(ctx, key)
}

func (f *FailStore) AddProviders(ctx context.Context, recs ...store.ProviderRecord) error {
	if err := f.fail(ctx, OpAddProviders); err != nil {
		return err
	}
	return f.Store.AddProviders(ctx, recs...)
}

func (f *FailStore) Providers(ctx context.Context, key []byte, limit int) ([]store.ProviderRecord, error) {
	if err := f.fail(ctx, OpProviders); err != nil {
		return nil, err
	}
	return f.Store.Providers(ctx, key, limit)
}

func (f *FailStore) RemoveProvider(ctx context.Context, key []byte, p peer.ID) error {
	if err := f.fail(ctx, OpRemoveProvider); err != nil {
		return err
	}
	return f.Store.RemoveProvider(ctx, key, p)
}

func (f *FailStore) Scan(ctx context.Context, opts store.ScanOptions) (store.Page, error) {
	if err := f.fail(ctx, OpScan); err != nil {
		return store.Page{}, err
	}
	return f.Store.Scan(ctx, opts)
}

func (f *FailStore) Expire(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := f.fail(ctx, OpExpire); err != nil {
		return 0, err
	}
	return f.Store.Expire(ctx, now, limit)
}

func (f *FailStore) Stats(ctx context.Context) (store.Stats, error) {
	if err := f.fail(ctx, OpStats); err != nil {
		return store.Stats{}, err
	}
	return f.Store.Stats(ctx)
}
