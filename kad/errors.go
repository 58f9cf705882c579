package kad

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/routing"
)

// Errors returned by the node. Match them with errors.Is.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("kad: node closed")
	// ErrNotFound is returned by GetValue and FindPeer when the lookup ends
	// without a result. It is routing.ErrNotFound, so callers written for
	// go-libp2p's routing interfaces recognise it.
	ErrNotFound = routing.ErrNotFound
	// ErrNoPeers is returned when an operation needs peers and the routing
	// table has none, or when no peer accepted a record sent to it.
	ErrNoPeers = errors.New("kad: no peers")
	// ErrStoreBusy is returned (wrapped with the context's error) when a
	// request's deadline passed while it waited for a store slot.
	ErrStoreBusy = errors.New("kad: store busy")
	// ErrStorePanic is returned (wrapped, with the method, the panic value,
	// and that value itself if it is an error) when a store call panicked.
	// The node recovers it, logs it, counts it in
	// kadstore_kad_store_panics_total and keeps serving.
	ErrStorePanic = errors.New("kad: store call panicked")
	// ErrInvalidRecord is returned (wrapped) for a value record the
	// validator rejects, including one in a namespace without a validator.
	ErrInvalidRecord = errors.New("kad: invalid record")
	// ErrWorseRecord is returned by PutValue when the stored record is
	// better than the one offered, by the validator's Select.
	ErrWorseRecord = errors.New("kad: a better record is stored")
	// ErrBootstrap is returned (wrapped, with the peers' errors) by Bootstrap
	// when bootstrap peers are configured and the routing table is still
	// empty after trying them all.
	ErrBootstrap = errors.New("kad: bootstrap failed")
	// ErrBadResponse is returned (wrapped) when a peer answers a request with
	// a message that does not fit it.
	ErrBadResponse = errors.New("kad: bad response")
)
