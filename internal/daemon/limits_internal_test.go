package daemon

import (
	"net/http"
	"testing"
	"time"

	"github.com/kadstore/kadstore/store"
)

// The API server has every timeout and the header cap set.
func TestAPIServerTimeouts(t *testing.T) {
	s := newAPIServer(http.NotFoundHandler())
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": s.ReadHeaderTimeout, "ReadTimeout": s.ReadTimeout,
		"WriteTimeout": s.WriteTimeout, "IdleTimeout": s.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s not set", name)
		}
	}
	if s.MaxHeaderBytes != APIMaxHeaderBytes {
		t.Errorf("MaxHeaderBytes %d", s.MaxHeaderBytes)
	}
}

// The per-provider cap is on by default; negative turns it off; the other
// limits are the store's defaults.
func TestStoreLimits(t *testing.T) {
	if l := storeLimits(Config{}); l.MaxRecordsPerProvider != DefaultMaxRecordsPerProvider || l.MaxAddrs != store.DefaultMaxAddrs {
		t.Errorf("default limits %+v", l)
	}
	if l := storeLimits(Config{MaxRecordsPerProvider: -1}); l.MaxRecordsPerProvider > 0 {
		t.Errorf("cap not off: %+v", l)
	}
}
