package chaos_test

import (
	"strings"
	"testing"
)

// httpScript makes one http call and reports how it went.
const httpScript = `
def main(input):
    kw = {"timeout": input["timeout"]}
    if input["method"] == "POST":
        r = attempt(http.post, input["url"], json = {"order": "o-1"}, **kw)
    else:
        r = attempt(http.get, input["url"], **kw)
    if not r.ok:
        return {"ok": False, "kind": r.kind, "error": r.error}
    v = r.value
    return {"ok": True, "status": v.status, "attempts": v.attempts, "body": v.body, "duration_ms": v.duration_ms}
`

// Each fault, injected into the first request of a call, is handled as the
// http builtin's policy says (spec/http.md): transient ones retried, 529
// returned as it is, latency and slow bodies waited out or timed out.
func TestHTTPFaults(t *testing.T) {
	body := `{"items": [` + strings.Repeat(`"abcdefghij",`, 80) + `"end"]}`
	for _, tc := range []struct {
		name     string
		spec     string
		method   string
		timeout  string
		attempts int    // of the call; 0: the call fails
		kind     string // the first attempt's kind, or the call's error kind
		status   int    // the first attempt's status
		sent     int    // requests the server received
		check    func(t *testing.T, res, d map[string]any, o *origin)
	}{
		{name: "429 with retry-after", spec: "http:429=40ms#1", attempts: 2, kind: "http_status", status: 429, sent: 1,
			check: func(t *testing.T, res, d map[string]any, o *origin) {
				a := attempts(d)[0]
				if num(a["retry_after_ms"]) != 40 || num(a["wait_ms"]) < 40 {
					t.Fatalf("first attempt %v: want the 40ms Retry-After-Ms honoured", a)
				}
			}},
		{name: "500", spec: "http:500#1", attempts: 2, kind: "http_status", status: 500, sent: 1},
		{name: "502", spec: "http:502#1", attempts: 2, kind: "http_status", status: 502, sent: 1},
		{name: "503", spec: "http:503#1", attempts: 2, kind: "http_status", status: 503, sent: 1},
		{name: "504", spec: "http:504#1", attempts: 2, kind: "http_status", status: 504, sent: 1},
		{name: "503 after the server acted", spec: "http:503+after_send#1", method: "POST", attempts: 2, kind: "http_status", status: 503, sent: 2,
			check: sameIdempotencyKey},
		{name: "529 is not retried", spec: "http:529#1", kind: "http_status", sent: 0,
			check: func(t *testing.T, res, d map[string]any, o *origin) {
				if !strings.Contains(res["error"].(string), "529") || len(attempts(d)) != 1 {
					t.Fatalf("result %v, detail %v: want one attempt and an error naming 529", res, d)
				}
			}},
		{name: "timeout", spec: "http:timeout#1", timeout: "150ms", attempts: 2, kind: "timeout", sent: 1},
		{name: "timeout with hang", spec: "http:timeout=30ms#1", attempts: 2, kind: "timeout", sent: 1},
		{name: "reset", spec: "http:reset#1", attempts: 2, kind: "connection", sent: 1,
			check: func(t *testing.T, res, d map[string]any, o *origin) {
				if e := attempts(d)[0]["error"].(string); !strings.Contains(e, "connection reset by peer") {
					t.Fatalf("first attempt's error %q", e)
				}
			}},
		{name: "reset after the server acted", spec: "http:reset+after_send#1", method: "POST", attempts: 2, kind: "connection", sent: 2,
			check: sameIdempotencyKey},
		{name: "latency", spec: "http:latency=80ms#1", attempts: 1, sent: 1,
			check: func(t *testing.T, res, d map[string]any, o *origin) {
				if num(res["duration_ms"]) < 80 {
					t.Fatalf("duration %v ms: want at least the 80ms injected", res["duration_ms"])
				}
			}},
		{name: "latency past the timeout", spec: "http:latency=1s#1", timeout: "100ms", attempts: 2, kind: "timeout", sent: 1},
		{name: "slow body", spec: "http:slow_body=100/5ms#1", attempts: 1, sent: 1,
			check: func(t *testing.T, res, d map[string]any, o *origin) {
				// 10 chunks of 100 bytes, 5ms apart.
				if num(res["duration_ms"]) < 40 {
					t.Fatalf("duration %v ms: the body did not trickle", res["duration_ms"])
				}
			}},
		{name: "slow body past the timeout", spec: "http:slow_body=10/20ms#1", timeout: "150ms", attempts: 2, kind: "timeout", status: 200, sent: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, body)
			h := newHarness(t, inline(t, tc.spec, 1), setup{})
			method, timeout := tc.method, tc.timeout
			if method == "" {
				method = "GET"
			}
			if timeout == "" {
				timeout = "2s"
			}
			in := map[string]any{"url": o.URL + "/v1/orders", "method": method, "timeout": timeout}
			res := h.result(httpScript, in)
			d := h.details("run-1")[0]
			at := attempts(d)
			if tc.attempts == 0 {
				if res["ok"] != false || res["kind"] != tc.kind {
					t.Fatalf("result %v: want a failure of kind %s", res, tc.kind)
				}
			} else {
				if res["ok"] != true || num(res["attempts"]) != tc.attempts || res["status"] != 200.0 || res["body"] != body {
					t.Fatalf("result %v: want 200 with the whole body after %d attempts", res, tc.attempts)
				}
				if tc.kind != "" && (at[0]["kind"] != tc.kind || num(at[0]["status"]) != tc.status) {
					t.Fatalf("first attempt %v: want kind %s status %d", at[0], tc.kind, tc.status)
				}
			}
			if got := len(o.requests()); got != tc.sent {
				t.Fatalf("the server received %d requests, want %d", got, tc.sent)
			}
			ev := h.inj.Events()
			host := strings.TrimPrefix(o.URL, "http://")
			if len(ev) != 1 || ev[0].Target != "http/"+host || ev[0].N != 1 || ev[0].Builtin != "http" || ev[0].Method != method {
				t.Fatalf("events %+v: want one fault on the first request to %s", ev, host)
			}
			if tc.check != nil {
				tc.check(t, res, d, o)
			}
			// The rule (#1) is spent: the next call goes through untouched.
			if res := h.result(httpScript, in); res["ok"] != true || res["attempts"] != 1.0 {
				t.Fatalf("second call %v: want a clean first attempt", res)
			}
			if s := h.inj.Summary(); s.Requests != len(at)+1 || s.Faulted != 1 || len(s.Targets) != 1 || s.Targets[0].Requests != len(at)+1 {
				t.Fatalf("summary %+v: want %d requests, 1 faulted", s, len(at)+1)
			}
		})
	}
}

// sameIdempotencyKey checks that a POST whose answer was lost was sent
// again with the same Idempotency-Key.
func sameIdempotencyKey(t *testing.T, res, d map[string]any, o *origin) {
	t.Helper()
	reqs := o.requests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	k1, k2 := reqs[0].Header.Get("Idempotency-Key"), reqs[1].Header.Get("Idempotency-Key")
	if k1 == "" || k1 != k2 || reqs[0].Method != "POST" {
		t.Fatalf("idempotency keys %q and %q: want the same key on the retry", k1, k2)
	}
}
