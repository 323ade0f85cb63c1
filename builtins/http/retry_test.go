package http_test

import (
	"fmt"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/runtime"
)

const getScript = `
def main(input):
    r = http.get(input["url"], retry = input.get("retry"))
    return {"status": r.status, "ok": r.ok, "attempts": r.attempts, "json": r.json}
`

// attemptScript calls http.get through attempt() and reports how it went.
const attemptScript = `
def main(input):
    kw = dict(input.get("kw", {}))
    if "retry" in input:
        kw["retry"] = input["retry"]
    r = attempt(http.get, input["url"], **kw)
    return {"ok": r.ok, "kind": r.kind, "error": r.error}
`

func TestRetriesTransientStatusesWithGrowingWaits(t *testing.T) {
	srv := newServer(t, statuses(503, 503, 200))
	h := newHarness(t, sfhttp.Options{})
	srv.useClock(h.rt.Now)
	res := h.result("r", getScript, input(srv.URL, "retry", map[string]any{"initial": "50ms", "jitter": 0}))
	if res["status"] != 200.0 || res["attempts"] != 3.0 || res["ok"] != true {
		t.Fatalf("result %v", res)
	}
	if js := res["json"].(map[string]any); js["n"] != 3.0 {
		t.Fatalf("json %v", js)
	}
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("server saw %d requests, want 3", len(reqs))
	}
	d := h.details("r")["1"]
	if len(d.Attempts) != 3 {
		t.Fatalf("detail %+v", d)
	}
	// Exponential backoff, coefficient 2: 50ms, then 100ms.
	if d.Attempts[0].WaitMs != 50 || d.Attempts[1].WaitMs != 100 || d.Attempts[2].WaitMs != 0 {
		t.Fatalf("waits %+v", d.Attempts)
	}
	if d.Attempts[0].Status != 503 || d.Attempts[0].Kind != "http_status" || d.Attempts[2].Status != 200 {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	// The runtime made the waits, on its clock.
	gap1, gap2 := reqs[1].At.Sub(reqs[0].At), reqs[2].At.Sub(reqs[1].At)
	if gap1 != 50*time.Millisecond || gap2 != 100*time.Millisecond || h.waited() != 150*time.Millisecond {
		t.Fatalf("the server saw the retries %s and %s apart on the runtime's clock, which moved %s; want 50ms and 100ms", gap1, gap2, h.waited())
	}
}

func TestDefaultPolicyJittersAroundOneSecond(t *testing.T) {
	// One default wait: 1s ±20%.
	srv := newServer(t, statuses(500, 200))
	h := newHarness(t, sfhttp.Options{})
	srv.useClock(h.rt.Now)
	res := h.result("r", getScript, input(srv.URL))
	if res["attempts"] != 2.0 {
		t.Fatalf("result %v", res)
	}
	w := h.details("r")["1"].Attempts[0].WaitMs
	if w < 800 || w > 1200 {
		t.Fatalf("first wait %dms, want 1s ±20%%", w)
	}
	reqs := srv.requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap.Milliseconds() != w {
		t.Fatalf("retried after %s, recorded wait %dms", gap, w)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(nethttp.StatusTooManyRequests)
			return
		}
		w.WriteHeader(200)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	srv.useClock(h.rt.Now)
	res := h.result("r", getScript, input(srv.URL))
	if res["attempts"] != 2.0 || res["status"] != 200.0 {
		t.Fatalf("result %v", res)
	}
	reqs := srv.requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap != time.Second {
		t.Fatalf("429 with Retry-After: 1 was retried after %s; want 1s", gap)
	}
	a := h.details("r")["1"].Attempts[0]
	if a.Status != 429 || a.RetryAfterMs != 1000 || a.WaitMs != 1000 {
		t.Fatalf("attempt %+v", a)
	}
}

func TestRetryAfterMsIsPreferred(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "30")
			w.Header().Set("retry-after-ms", "120")
			w.WriteHeader(nethttp.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(200)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	srv.useClock(h.rt.Now)
	h.result("r", getScript, input(srv.URL))
	reqs := srv.requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap != 120*time.Millisecond {
		t.Fatalf("retried after %s; want retry-after-ms (120ms)", gap)
	}
	if a := h.details("r")["1"].Attempts[0]; a.RetryAfterMs != 120 {
		t.Fatalf("attempt %+v", a)
	}
}

func TestRetryAfterBeyondDeadlineFailsAtOnce(t *testing.T) {
	date := runtest.NewClock().Now().Add(time.Hour + 30*time.Second).UTC().Format(nethttp.TimeFormat) // on the harness's clock
	for _, tc := range []struct {
		name, header, value string
		kw                  map[string]any
		want                string
	}{
		{"seconds", "Retry-After", "30", map[string]any{"deadline": 5}, "asked to wait 30s"},
		{"date", "Retry-After", date, map[string]any{"deadline": "5s"}, "asked to wait 1h0m"},
		{"ms", "Retry-After-Ms", "20000", map[string]any{"deadline": 5}, "asked to wait 20s"},
		// Without deadline=, the module's MaxRetryAfter (1 minute) bounds it.
		{"no deadline", "Retry-After", "3600", map[string]any{}, "call without deadline= waits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
				w.Header().Set(tc.header, tc.value)
				w.WriteHeader(nethttp.StatusServiceUnavailable)
			})
			h := newHarness(t, sfhttp.Options{Retry: fast})
			res := h.result("r", attemptScript, input(srv.URL, "kw", tc.kw))
			if res["ok"] != false || res["kind"] != "deadline" || !strings.Contains(res["error"].(string), tc.want) {
				t.Fatalf("result %v", res)
			}
			if n := srv.count(); n != 1 {
				t.Fatalf("server saw %d requests, want 1", n)
			}
			// "At once": not after waiting until the deadline.
			if w := h.waited(); w != 0 {
				t.Fatalf("waited %s instead of failing", w)
			}
			if d := h.details("r")["1"]; d.Stopped != "deadline" {
				t.Fatalf("detail %+v", d)
			}
		})
	}
}

func TestRaiseForStatusFalseReturnsTheLastResponse(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(404)
			fmt.Fprint(w, "no such thing")
			return
		}
		w.Header().Set("Retry-After", "7200")
		w.WriteHeader(429)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", `
def main(input):
    a = http.get(input["url"] + "/missing", raise_for_status = False)
    b = http.get(input["url"] + "/limited", raise_for_status = False)
    return {"a": [a.status, a.ok, a.body, a.attempts], "b": [b.status, b.headers["retry-after"], b.attempts]}
`, input(srv.URL))
	if fmt.Sprint(res["a"]) != "[404 false no such thing 1]" || fmt.Sprint(res["b"]) != "[429 7200 1]" {
		t.Fatalf("result %v", res)
	}
}

func TestClientErrorsFailFastAfterOneAttempt(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409, 422} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
				w.WriteHeader(code)
				fmt.Fprintf(w, `{"error": "nope %d",`+"\n"+` "detail": "%s"}`, code, strings.Repeat("x", 500))
			})
			h := newHarness(t, sfhttp.Options{Retry: fast})
			res := h.result("r", attemptScript, input(srv.URL))
			msg, _ := res["error"].(string)
			if res["kind"] != "http_status" || !strings.Contains(msg, fmt.Sprintf("%d %s (1 attempt)", code, nethttp.StatusText(code))) ||
				!strings.Contains(msg, fmt.Sprintf(`{"error": "nope %d", "detail": "xxx`, code)) || len(msg) > 400 {
				t.Fatalf("result %v", res)
			}
			if n := srv.count(); n != 1 {
				t.Fatalf("server saw %d requests, want exactly 1", n)
			}
		})
	}
}

func TestExhaustedRetriesFail(t *testing.T) {
	srv := newServer(t, statuses(502))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", attemptScript, input(srv.URL))
	if res["kind"] != "http_status" || !strings.Contains(res["error"].(string), "502 Bad Gateway (4 attempts)") {
		t.Fatalf("result %v", res)
	}
	if n := srv.count(); n != 4 {
		t.Fatalf("server saw %d requests, want the default 4 attempts", n)
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		w.WriteHeader(200)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", `
def main(input):
    r = http.get(input["url"], timeout = 0.2)
    return {"attempts": r.attempts, "status": r.status}
`, input(srv.URL))
	if res["attempts"] != 2.0 || res["status"] != 200.0 {
		t.Fatalf("result %v", res)
	}
	if a := h.details("r")["1"].Attempts[0]; a.Kind != "timeout" || !strings.Contains(a.Error, "timed out after 200ms") {
		t.Fatalf("attempt %+v", a)
	}
}

func TestSlowBodyIsATimeout(t *testing.T) {
	// The per-attempt timeout covers reading the body, not only headers.
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		w.WriteHeader(200)
		fmt.Fprint(w, "partial")
		w.(nethttp.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", attemptScript, input(srv.URL, "kw", map[string]any{"timeout": 0.2}, "retry", 2))
	if res["kind"] != "timeout" || srv.count() != 2 {
		t.Fatalf("result %v after %d requests", res, srv.count())
	}
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	t.Run("gives up", func(t *testing.T) {
		h := newHarness(t, sfhttp.Options{Retry: fast})
		res := h.result("r", attemptScript, input("http://"+addr+"/x", "retry", 3))
		if res["kind"] != "connection" || !strings.Contains(res["error"].(string), "connection refused") || !strings.Contains(res["error"].(string), "(3 attempts)") {
			t.Fatalf("result %v", res)
		}
		d := h.details("r")["1"]
		if len(d.Attempts) != 3 || d.Attempts[0].Kind != "connection" {
			t.Fatalf("detail %+v", d)
		}
	})

	t.Run("recovers", func(t *testing.T) {
		// The server comes up while the call waits to retry.
		h := newHarness(t, sfhttp.Options{})
		var once sync.Once
		up := make(chan error, 1)
		h.logs.onLine = func(line string) {
			if strings.Contains(line, `"message":"http retry"`) {
				once.Do(func() {
					l, err := net.Listen("tcp", addr)
					if err == nil {
						go nethttp.Serve(l, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) { fmt.Fprint(w, "up") }))
						t.Cleanup(func() { l.Close() })
					}
					up <- err
				})
			}
		}
		res := h.result("r", getScript, input("http://"+addr+"/x", "retry", map[string]any{"initial": "300ms", "jitter": 0}))
		if err := <-up; err != nil {
			t.Fatalf("could not bring the server up: %v", err)
		}
		if res["attempts"] != 2.0 || res["status"] != 200.0 {
			t.Fatalf("result %v", res)
		}
		if a := h.details("r")["1"].Attempts[0]; a.Kind != "connection" {
			t.Fatalf("attempt %+v", a)
		}
	})
}

func TestRetryBudgetStopsRetryStorms(t *testing.T) {
	failing := func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/ok" {
			return
		}
		w.WriteHeader(503)
	}
	a := newServer(t, failing)
	b := newServer(t, failing)
	// 10 tokens: two retries' worth.
	h := newHarness(t, sfhttp.Options{Retry: fast, Budget: sfhttp.Budget{Capacity: 10, RetryCost: 5, Refund: 1}})
	res := h.result("r", `
def main(input):
    p = retry_policy(max_attempts = 10, initial = "1ms", jitter = 0.0)
    out = {}
    out["first"] = attempt(http.get, input["a"] + "/fail", retry = p)
    out["second"] = attempt(http.get, input["a"] + "/fail", retry = p)
    out["other_host"] = attempt(http.get, input["b"] + "/fail", retry = p)
    for i in range(5):
        http.get(input["a"] + "/ok")  # successes refund 1 token each
    out["after_refund"] = attempt(http.get, input["a"] + "/fail", retry = p)
    return {k: {"kind": v.kind, "error": v.error} for k, v in out.items()}
`, map[string]any{"a": a.URL, "b": b.URL})
	for k, v := range res {
		r := v.(map[string]any)
		if r["kind"] != "retry_budget" || !strings.Contains(r["error"].(string), "retry budget for host 127.0.0.1:") {
			t.Fatalf("%s: %v", k, r)
		}
	}
	attempts := map[string]int{}
	for step, d := range h.details("r") {
		attempts[step] = len(d.Attempts)
	}
	// first: 2 retries empty the bucket; second: no retry at all; the
	// other host has its own bucket; 5 refunds pay for one more retry.
	if attempts["1"] != 3 || attempts["2"] != 1 || attempts["3"] != 3 || attempts["9"] != 2 {
		t.Fatalf("attempts by step %v", attempts)
	}
	fails := 0
	for _, r := range a.requests() {
		if r.Path == "/fail" {
			fails++
		}
	}
	if fails != 3+1+2 {
		t.Fatalf("failing host got %d requests, want 6", fails)
	}
}

func TestDefaultsSetRetryForTheRun(t *testing.T) {
	srv := newServer(t, statuses(503))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", `
def main(input):
    http.defaults(retry = 2, timeout = "5s")
    a = attempt(http.get, input["url"])
    b = attempt(http.get, input["url"], retry = 3)
    http.defaults(retry = None)
    c = attempt(http.get, input["url"])
    return {"kinds": [a.kind, b.kind, c.kind]}
`, input(srv.URL))
	if fmt.Sprint(res["kinds"]) != "[http_status http_status http_status]" {
		t.Fatalf("result %v", res)
	}
	d := h.details("r")
	if len(d["1"].Attempts) != 2 || len(d["2"].Attempts) != 3 || len(d["3"].Attempts) != 4 {
		t.Fatalf("attempts %d %d %d, want 2 3 4", len(d["1"].Attempts), len(d["2"].Attempts), len(d["3"].Attempts))
	}
}

func TestNonRetryableKindsInPolicy(t *testing.T) {
	srv := newServer(t, statuses(503))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", attemptScript, input(srv.URL, "retry", map[string]any{"non_retryable": []string{"http_status"}}))
	if res["kind"] != "http_status" || srv.count() != 1 {
		t.Fatalf("result %v after %d requests", res, srv.count())
	}
}

func TestDeadlineBoundsTheWholeCall(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("r", attemptScript, input(srv.URL, "kw", map[string]any{"timeout": 5, "deadline": 0.3}))
	if res["kind"] != "deadline" || !strings.Contains(res["error"].(string), "deadline of 300ms") {
		t.Fatalf("result %v", res)
	}
}

var _ = runtime.RetryPolicy{}
