// Package retryafter owns starflow's one reading of the waits a server
// asks for: Retry-After (seconds or an HTTP date, RFC 9110 §10.2.3) and
// the retry-after-ms header OpenAI and Azure send. The http and llm
// builtins both use it, so they never disagree about a response.
package retryafter

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Max is the longest wait Parse reports; a larger request is capped to it.
const Max = 365 * 24 * time.Hour

// Parse reads the wait a response's headers ask for: retry-after-ms
// (milliseconds) when it is valid, else Retry-After (delay-seconds, or an
// HTTP date measured from now). Negative, NaN, infinite and unparsable
// values are ignored; a date in the past asks for no wait (0, true);
// waits beyond Max are capped. ok is false when the headers ask for
// nothing usable.
func Parse(h http.Header, now time.Time) (wait time.Duration, ok bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && !math.IsInf(ms, 0) && !math.IsNaN(ms) {
			if ms/1000 > Max.Seconds() {
				return Max, true
			}
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || math.IsNaN(s) {
			return 0, false
		}
		if s > Max.Seconds() {
			return Max, true
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), Max), true
	}
	return 0, false
}
