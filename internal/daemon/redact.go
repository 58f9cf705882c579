package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
)

// Redacted replaces a password in what RedactDSN returns.
const Redacted = "xxxxx"

var (
	// The password of a postgres:// URL's user information. It runs to the
	// last "@" of the token, so a password with an unescaped "@" is hidden
	// whole.
	urlPassword = regexp.MustCompile(`(?i)(\bpostgres(?:ql)?://[^:/@\s]*:)\S*@`)
	// A password= parameter (password, sslpassword, PGPASSWORD), of a
	// key=value string or a URL's query: a quoted value to its closing
	// quote, an unquoted one to the next blank or quote (in a URL that may
	// hide the parameters after it too, never part of the password).
	paramPassword = regexp.MustCompile("(?i)(password\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'?|[^\\s\"`]*)")
)

// RedactDSN returns s with the passwords of the PostgreSQL connection
// strings in it replaced by Redacted: both forms pgx accepts, the URL
// (postgres://user:password@host/db, or ?password=…) and key=value
// (host=… password=…, quoted or not). The rest of s is kept, so it cleans a
// DSN, an error message quoting one, or a log line. Every log line, error
// and API answer of the daemon that may hold a DSN goes through it.
func RedactDSN(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+Redacted+"@")
	return paramPassword.ReplaceAllString(s, "${1}"+Redacted)
}

// RedactError returns err with its message passed through RedactDSN; the
// result still matches, with errors.Is and errors.As, what err matched.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	msg := RedactDSN(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactingHandler is a slog.Handler that passes the message and every
// string and error attribute through RedactDSN before h sees them, so that
// no log line of the daemon (its own, the node's, the store's, the API's)
// carries a database password.
type redactingHandler struct{ h slog.Handler }

// redactLogger returns l logging through a redactingHandler.
func redactLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(redactingHandler); ok {
		return l
	}
	return slog.New(redactingHandler{l.Handler()})
}

func (r redactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return r.h.Enabled(ctx, level)
}

func (r redactingHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, RedactDSN(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return redactingHandler{r.h.WithAttrs(red)}
}

func (r redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{r.h.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, RedactDSN(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.Any(a.Key, RedactError(x))
		case fmt.Stringer:
			if s := x.String(); RedactDSN(s) != s {
				return slog.String(a.Key, RedactDSN(s))
			}
		case []string:
			red := make([]string, len(x))
			for i, s := range x {
				red[i] = RedactDSN(s)
			}
			return slog.Any(a.Key, red)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
