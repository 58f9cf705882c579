package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kadstore/kadstore/store"
)

// MsgNoSpace is the message of a write refused for want of disk space
// (store.ErrNoSpace, answered 507 Insufficient Storage).
const MsgNoSpace = "not enough free disk space; writes resume when space is freed"

// HealthHeader is set on every /healthz answer: "ok", "degraded" (the store
// reports a problem and the node still serves) or "unavailable".
const HealthHeader = "X-Kadstore-Health"

// storeStatus maps a store error to the status of the answer and a short
// explanation: 507 for a full disk, 503 for storage that failed, cannot be
// reached or is closed, or a call that ran out of time, 500 for damaged data,
// and 503 for any other store failure.
func storeStatus(err error) (int, string) {
	switch {
	case errors.Is(err, store.ErrNoSpace):
		return http.StatusInsufficientStorage, MsgNoSpace
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "storage unavailable"
	case errors.Is(err, store.ErrClosed):
		return http.StatusServiceUnavailable, "store closed"
	case errors.Is(err, store.ErrCorrupt):
		return http.StatusInternalServerError, "stored data is damaged"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "store did not answer in time"
	}
	return http.StatusServiceUnavailable, "store"
}

// writeStoreError answers a failed store call (see storeStatus).
func writeStoreError(w http.ResponseWriter, err error) {
	code, msg := storeStatus(err)
	writeError(w, code, "%s: %v", msg, err)
}

// health returns the store's health, and false if its backend does not
// report one.
func (a *api) health() (store.Health, bool) {
	hr, ok := a.cfg.Store.(store.HealthReporter)
	if !ok {
		return store.Health{}, false
	}
	return hr.Health(), true
}

// recoverer answers 500 for a handler that panics, instead of the connection
// drop and "http: panic serving" of net/http: the panic is logged once with
// the request's path and counted in kadstore_api_panics_total, and the server
// goes on serving. If the handler had begun its answer the connection is
// closed (no status can be sent any more). http.ErrAbortHandler, the
// deliberate way to drop a connection, passes through unlogged.
func (a *api) recoverer(h http.Handler, panics prometheus.Counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // net/http compares it so too
				panic(v)
			}
			panics.Inc()
			a.cfg.Logger.Error("API handler panicked; answered 500", "method", r.Method, "path", r.URL.Path, "panic", v)
			a.cfg.Logger.Debug("API handler panic stack", "path", r.URL.Path, "stack", string(debug.Stack()))
			if tw.wrote {
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "internal error: %v", v)
		}()
		h.ServeHTTP(tw, r)
	})
}

// trackingWriter notes whether the answer has begun.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	if code >= 200 {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *trackingWriter) Flush() {
	w.wrote = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newPanicCounter returns kadstore_api_panics_total, registered with reg if
// it is not nil (an API built twice on one registry shares the counter).
func newPanicCounter(reg prometheus.Registerer, log *slog.Logger) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "kadstore", Subsystem: "api", Name: "panics_total",
		Help: "HTTP API handlers that panicked (answered 500, or the connection closed if the answer had begun).",
	})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return old
			}
		}
		log.Warn("API: cannot register kadstore_api_panics_total", "err", err)
	}
	return c
}

// statusHint carries, from the delegated router to the response writer, the
// status a store failure calls for: boxo's server answers every error of a
// router's PutIPNS with 500.
type statusHint struct{ code int }

type statusHintKey struct{}

// hintStatus records in ctx (if withStatusHint prepared it) the status err
// calls for when it is a full disk (507) or unavailable or closed storage
// (503), and returns err with the explanation.
func hintStatus(ctx context.Context, err error) error {
	if !errors.Is(err, store.ErrNoSpace) && !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrClosed) {
		return err
	}
	code, msg := storeStatus(err)
	if h, ok := ctx.Value(statusHintKey{}).(*statusHint); ok {
		h.code = code
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// withStatusHint serves r with h so that a status recorded by hintStatus
// replaces the 500 of boxo's error answer.
func withStatusHint(h http.Handler, w http.ResponseWriter, r *http.Request) {
	hint := &statusHint{}
	r = r.WithContext(context.WithValue(r.Context(), statusHintKey{}, hint))
	h.ServeHTTP(&hintWriter{ResponseWriter: w, hint: hint}, r)
}

type hintWriter struct {
	http.ResponseWriter
	hint *statusHint
}

func (w *hintWriter) WriteHeader(code int) {
	if code == http.StatusInternalServerError && w.hint.code != 0 {
		code = w.hint.code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hintWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *hintWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
