package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		h    map[string]string
		want time.Duration
		ok   bool
	}{
		{map[string]string{"Retry-After": "1"}, time.Second, true},
		{map[string]string{"Retry-After": " 120 "}, 2 * time.Minute, true},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond, true},
		{map[string]string{"Retry-After": "Fri, 27 Nov 2026 12:00:30 GMT"}, 30 * time.Second, true},
		{map[string]string{"Retry-After": "Friday, 27-Nov-26 12:01:00 GMT"}, time.Minute, true},
		{map[string]string{"Retry-After": "Fri, 27 Nov 2026 11:00:00 GMT"}, 0, true},
		{map[string]string{"Retry-After": "-3"}, 0, false},
		{map[string]string{"Retry-After": "NaN"}, 0, false},
		{map[string]string{"Retry-After": "soon"}, 0, false},
		{map[string]string{"Retry-After": "99999999999999"}, Max, true},
		{map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond, true},
		{map[string]string{"Retry-After-Ms": "NaN", "Retry-After": "2"}, 2 * time.Second, true},
		{map[string]string{"Retry-After-Ms": "+Inf", "Retry-After": "2"}, 2 * time.Second, true},
		{map[string]string{"Retry-After-Ms": "1e300"}, Max, true},
		{map[string]string{"Retry-After-Ms": "x", "Retry-After": "2"}, 2 * time.Second, true},
		{map[string]string{}, 0, false},
	} {
		h := http.Header{}
		for k, v := range c.h {
			h.Set(k, v)
		}
		got, ok := Parse(h, now)
		if got != c.want || ok != c.ok {
			t.Errorf("Parse(%v) = %v, %v; want %v, %v", c.h, got, ok, c.want, c.ok)
		}
	}
}
