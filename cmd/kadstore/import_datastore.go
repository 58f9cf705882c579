package main

import (
	"context"
	"fmt"
	"io"

	"github.com/kadstore/kadstore/store"
)

// importDatastore reads a go-libp2p-kad-dht datastore's provider records.
func importDatastore(ctx context.Context, dir string, s store.Store, stdout io.Writer, bar *progressBar) error {
	return fmt.Errorf("importing from a datastore is not wired yet")
}
