package http_test

import (
	"fmt"
	nethttp "net/http"
	"os"
	"strings"
	"testing"
	"time"

	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/scripts/flakyserver"
)

func TestResponseShape(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"method": %q, "query": %q, "list": [1, 2.5, null], "nested": {"k": true}}`, r.Method, r.URL.RawQuery)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("shape", `
def main(input):
    r = http.request("put", input["url"] + "/x?a=1", params = {"b": [2, 3], "c": True})
    return {"status": r.status, "ok": r.ok, "multi": r.headers["x-multi"], "ctype": r.headers["content-type"],
            "json": r.json, "body_is_text": type(r.body), "attempts": r.attempts, "has_duration": r.duration_ms >= 0,
            "fields": sorted(dir(r))}
`, input(srv.URL))
	want := `map[attempts:1 body_is_text:string ctype:application/json; charset=utf-8 fields:[attempts body duration_ms headers json ok status] has_duration:true json:map[list:[1 2.5 <nil>] method:PUT nested:map[k:true] query:a=1&b=2&b=3&c=true] multi:a, b ok:true status:201]`
	if got := fmt.Sprint(res); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestBodiesAndJSON(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprint(w, "not json")
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("b", `
def main(input):
    u = input["url"]
    a = http.post(u, body = "hello")
    http.post(u, body = b"\x00\x01")
    http.post(u, body = {"user": "bob", "tags": ["x", "y"]})
    http.post(u, json = {"z": 1, "a": [True, None, 1.5], "s": "<&>"})
    return {"json": a.json, "body": a.body}
`, input(srv.URL))
	if res["json"] != nil || res["body"] != "not json" {
		t.Fatalf("result %v", res)
	}
	var got []string
	for _, r := range srv.requests() {
		got = append(got, r.Header.Get("Content-Type")+" "+r.Body)
	}
	want := []string{
		"text/plain; charset=utf-8 hello",
		"application/octet-stream \x00\x01",
		"application/x-www-form-urlencoded tags=x&tags=y&user=bob",
		`application/json {"z":1,"a":[true,null,1.5],"s":"<&>"}`,
	}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestInvalidArguments(t *testing.T) {
	h := newHarness(t, sfhttp.Options{Retry: fast})
	for i, tc := range []struct{ call, want string }{
		{`http.post("http://127.0.0.1:1/", json = {}, body = "x")`, "pass json= or body=, not both"},
		{`http.request("GET POST", "http://127.0.0.1:1/")`, "is not an HTTP method"},
		{`http.get("ftp://127.0.0.1/")`, "must start with http:// or https://"},
		{`http.get("http:///path")`, "has no host"},
		{`http.get("http://127.0.0.1:1/", headers = ["x"])`, "headers must be a dict"},
		{`http.get("http://127.0.0.1:1/", headers = {"Bad Name": "x"})`, "header name"},
		{`http.get("http://127.0.0.1:1/", headers = {"X": "a\nb"})`, "line break"},
		{`http.get("http://127.0.0.1:1/", headers = {"X-Count": 5})`, "the value of header X-Count must be a string, secret() or an auth value (http.bearer, http.basic, http.auth), got int"},
		{`http.get("http://127.0.0.1:1/", headers = {"X-Flags": ["a", True]})`, "the value of header X-Flags must be a string, secret() or an auth value (http.bearer, http.basic, http.auth), got bool"},
		{`http.get("http://127.0.0.1:1/", headers = {"X-None": None})`, "the value of header X-None must be a string"},
		{`http.get("http://127.0.0.1:1/", headers = {5: "x"})`, "header names must be strings, got int"},
		{`http.get("http://127.0.0.1:1/", params = {"a": {}})`, "must be a string, number, bool or secret()"},
		{`http.get("http://127.0.0.1:1/", timeout = -1)`, "timeout"},
		{`http.get("http://127.0.0.1:1/", retry = {"tries": 3})`, "unknown policy field"},
		{`http.get("http://127.0.0.1:1/", auth = "token")`, "auth must be http.bearer"},
		{`http.get("http://127.0.0.1:1/", bogus = 1)`, "unexpected keyword argument"},
		{`http.post("http://127.0.0.1:1/", json = {"x": float("nan")})`, "cannot be sent as JSON"},
	} {
		res := h.result(fmt.Sprintf("a%d", i), `
def main(input):
    r = attempt(lambda: `+tc.call+`)
    return {"kind": r.kind, "error": r.error}
`, nil)
		if res["kind"] != "invalid_argument" || !strings.Contains(res["error"].(string), tc.want) {
			t.Errorf("%s: %v", tc.call, res)
		}
	}
}

func TestReplayMakesNoRequest(t *testing.T) {
	srv := newServer(t, statuses(200))
	clock := runtest.NewClock()
	h := newHarness(t, sfhttp.Options{Retry: fast}, func(o *runtime.Options) {
		o.Clock = clock.Now
		o.MaxInlineWait = -1
	})
	src := `
def main(input):
    r = http.get(input["url"])
    sleep("1h")
    return {"n": r.json["n"]}
`
	out := h.start("rp", src, input(srv.URL))
	if out.Status != journal.StatusWaiting || srv.count() != 1 {
		t.Fatalf("status %s after %d requests", out.Status, srv.count())
	}
	clock.Advance(2 * time.Hour)
	out, err := h.rt.Resume(bg, "rp")
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != journal.StatusCompleted || string(out.Result) != `{"n":1}` {
		t.Fatalf("outcome %s %s %+v", out.Status, out.Result, out.Error)
	}
	if srv.count() != 1 || out.Stats.Replayed != 1 {
		t.Fatalf("replay sent %d requests (stats %+v)", srv.count()-1, out.Stats)
	}
}

func TestFlakyAPIScript(t *testing.T) {
	const token = "flaky-token-123456"
	t.Setenv("FLAKY_API_TOKEN", token)
	api := flakyserver.New(flakyserver.Options{Token: token, RetryAfter: 50 * time.Millisecond})
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) { api.ServeHTTP(w, r) })
	src, err := os.ReadFile("../../scripts/flaky_api.star")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sfhttp.Options{})
	res := h.result("flaky", string(src), input(srv.URL, "initial", "10ms",
		"orders", []map[string]any{{"order": "o-1", "amount": 100}, {"order": "o-2", "amount": 250}, {"order": "o-3", "amount": 999}}))

	// /status: 503, 429 (Retry-After), 200.
	if res["status_attempts"] != 3.0 || len(res["failed"].([]any)) != 0 {
		t.Fatalf("result %v", res)
	}
	charges := res["charges"].([]any)
	if len(charges) != 3 {
		t.Fatalf("charges %v", charges)
	}
	for i, c := range charges {
		c := c.(map[string]any)
		// 503, then charged but the answer lost, then the charge replayed.
		if c["attempts"] != 3.0 || c["replayed"] != true || c["charge"] != fmt.Sprintf("ch_%d", i+1) {
			t.Fatalf("charge %d: %v", i, c)
		}
	}
	made := api.Charges()
	if len(made) != 3 {
		t.Fatalf("the API charged %d times, want 3: %+v", len(made), made)
	}
	for _, c := range made {
		if api.Requests(c.Key) != 3 {
			t.Fatalf("key %s: %d requests", c.Key, api.Requests(c.Key))
		}
	}
	d := h.details("flaky")["1"]
	if len(d.Attempts) != 3 || d.Attempts[1].Status != 429 || d.Attempts[1].RetryAfterMs != 50 {
		t.Fatalf("status detail %+v", d)
	}
	// A charge's lost answer is a connection failure, retried.
	if d := h.details("flaky")["2"]; len(d.Attempts) != 3 || d.Attempts[0].Status != 503 || d.Attempts[1].Kind != "connection" {
		t.Fatalf("charge detail %+v", d)
	}
}

func TestFlakyAPIScriptReportsFailedCharges(t *testing.T) {
	// A wrong token is a 401: not retried, reported by the script.
	t.Setenv("FLAKY_API_TOKEN", "wrong-token-000")
	api := flakyserver.New(flakyserver.Options{Token: "right-token-111"})
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/status" {
			w.WriteHeader(200)
			return
		}
		api.ServeHTTP(w, r)
	})
	src, err := os.ReadFile("../../scripts/flaky_api.star")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sfhttp.Options{})
	res := h.result("flaky", string(src), input(srv.URL, "initial", "10ms"))
	failed := res["failed"].([]any)
	if len(failed) != 2 || len(res["charges"].([]any)) != 0 {
		t.Fatalf("result %v", res)
	}
	f := failed[0].(map[string]any)
	if f["kind"] != "http_status" || !strings.Contains(f["error"].(string), "401 Unauthorized (1 attempt)") || strings.Contains(f["error"].(string), "wrong-token-000") {
		t.Fatalf("failure %v", f)
	}
	if len(api.Charges()) != 0 {
		t.Fatal("charged without the token")
	}
}

func TestURLQueryIsSentAsWritten(t *testing.T) {
	// A presigned URL breaks if its query is re-ordered or re-encoded.
	srv := newServer(t, statuses(200))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	h.result("q", `
def main(input):
    http.get(input["url"] + "/o?z=1&a=x%20y&X-Amz-Signature=ab%2Fcd+ef")
    http.get(input["url"] + "/o?z=1", params = {"y": "a b", "b": 2})
    return {}
`, input(srv.URL))
	reqs := srv.requests()
	if reqs[0].Query != "z=1&a=x%20y&X-Amz-Signature=ab%2Fcd+ef" || reqs[1].Query != "z=1&y=a+b&b=2" {
		t.Fatalf("queries %q, %q", reqs[0].Query, reqs[1].Query)
	}
	if d := h.details("q")["1"]; !strings.Contains(d.URL, "X-Amz-Signature=REDACTED") {
		t.Fatalf("detail url %s", d.URL)
	}
}
