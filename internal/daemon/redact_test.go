package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/kadstore/kadstore/store"
)

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"pebble", "pebble"},
		{"memory", "memory"},
		{"postgres://kad:secretpw@127.0.0.1:1/db", "postgres://kad:xxxxx@127.0.0.1:1/db"},
		{"postgresql://kad:secretpw@db.example:5432/kad?sslmode=disable", "postgresql://kad:xxxxx@db.example:5432/kad?sslmode=disable"},
		{"POSTGRES://kad:secretpw@h/db", "POSTGRES://kad:xxxxx@h/db"},
		{"postgres://kad:se@cr:et@h/db", "postgres://kad:xxxxx@h/db"},
		{"postgres://kad:s%40cret@h1:5432,h2:5432/db", "postgres://kad:xxxxx@h1:5432,h2:5432/db"},
		{"postgres://kad@h/db", "postgres://kad@h/db"},
		{"postgres://h/db", "postgres://h/db"},
		{"postgres://h:5432/db", "postgres://h:5432/db"},
		{"postgres://kad@h/db?password=secretpw", "postgres://kad@h/db?password=xxxxx"},
		{"postgres://kad@h/db?sslmode=disable&password=secretpw&application_name=x", "postgres://kad@h/db?sslmode=disable&password=xxxxx"},
		{"host=h user=kad password=secretpw dbname=db", "host=h user=kad password=xxxxx dbname=db"},
		{"host=h password = secretpw dbname=db", "host=h password = xxxxx dbname=db"},
		{"host=h password='secret pw' dbname=db", "host=h password=xxxxx dbname=db"},
		{`host=h password='it\'s secretpw' dbname=db`, "host=h password=xxxxx dbname=db"},
		{"host=h PASSWORD=secretpw", "host=h PASSWORD=xxxxx"},
		{"host=h sslpassword=secretpw", "host=h sslpassword=xxxxx"},
		{"password=secretpw", "password=xxxxx"},
		{"password=", "password=xxxxx"},
		{`store "host=h password=secretpw": want pebble`, `store "host=h password=xxxxx": want pebble`},
		{"opening postgres://kad:secretpw@127.0.0.1:1/db: connect: connection refused", "opening postgres://kad:xxxxx@127.0.0.1:1/db: connect: connection refused"},
		{"failed to connect to `user=kad database=db`: password authentication failed for user \"kad\"", "failed to connect to `user=kad database=db`: password authentication failed for user \"kad\""},
		{"http://user:pw@example.com/x", "http://user:pw@example.com/x"},
	} {
		got := RedactDSN(tc.in)
		if got != tc.want {
			t.Errorf("RedactDSN(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "cr:et") {
			t.Errorf("RedactDSN(%q) = %q keeps the password", tc.in, got)
		}
	}
}

func TestRedactError(t *testing.T) {
	if RedactError(nil) != nil {
		t.Fatal("RedactError(nil) != nil")
	}
	plain := errors.New("no password here")
	if RedactError(plain) != plain {
		t.Error("an error without a password is not returned as it is")
	}
	err := RedactError(fmt.Errorf("opening postgres://kad:secretpw@h/db: %w", store.ErrUnavailable))
	if strings.Contains(err.Error(), "secretpw") || !strings.Contains(err.Error(), "kad:xxxxx@h/db") {
		t.Errorf("redacted error: %v", err)
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("redacted error %v does not match store.ErrUnavailable", err)
	}
}

func TestRedactingLogger(t *testing.T) {
	var buf strings.Builder
	log := redactLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log = log.With("store", "postgres://kad:secretpw@h/db").WithGroup("g")
	log.Info("opening host=h password=secretpw",
		"err", fmt.Errorf("connect postgres://kad:secretpw@h/db: %w", store.ErrUnavailable),
		"dsns", []string{"password=secretpw"},
		slog.Group("inner", "dsn", "host=h password='secret pw'"),
		"n", 3)
	out := buf.String()
	if strings.Contains(out, "secret") {
		t.Fatalf("a password is logged:\n%s", out)
	}
	for _, want := range []string{"store=postgres://kad:xxxxx@h/db", "password=xxxxx", "n=3", "g.inner.dsn"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %q:\n%s", want, out)
		}
	}
}
