package memstore_test

import (
	"testing"

	"github.com/kadstore/kadstore/store"
	"github.com/kadstore/kadstore/store/memstore"
	"github.com/kadstore/kadstore/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB, dir string, opts store.Options) store.Store {
		return memstore.New(opts)
	})
}
