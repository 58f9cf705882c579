package pgstore

import (
	"errors"
	"fmt"

	"github.com/kadstore/kadstore/store"
)

// Errors of the PostgreSQL backend, beyond the store package's sentinels.
var (
	// ErrUnavailable is returned (wrapping the pgx error) when the server
	// cannot be reached or dropped the connection: it is down, restarting,
	// refusing connections, or the network failed. The call may be retried
	// once the server is back; the pool reconnects by itself. A write that
	// failed this way may or may not have been applied (a lost commit
	// acknowledgement); every write is idempotent, so retrying it is safe.
	// It matches store.ErrUnavailable too.
	ErrUnavailable = fmt.Errorf("pgstore: database unavailable: %w", store.ErrUnavailable)
	// ErrSchemaVersion is returned by Open when the database schema was
	// migrated by a newer kadstore than this one.
	ErrSchemaVersion = errors.New("pgstore: schema version is newer than this kadstore")
)
