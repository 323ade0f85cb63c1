package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

// secureServer runs a server with the options as given (serveOn turns
// inline sources on for the other tests; these test the defaults), its log
// captured.
func secureServer(t *testing.T, opts server.Options) (*fixture, *runtest.LogBuffer) {
	t.Helper()
	e := runtest.New(t, func(o *runtime.Options) { o.Clock = time.Now; o.MaxInlineWait = 20 * time.Millisecond })
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	logs := &runtest.LogBuffer{}
	opts.Logger = zerolog.New(logs)
	srv, err := server.New(e.RT, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	f := &fixture{t: t, env: e, srv: srv, client: server.NewClient(srv.Addr(), opts.Token), stop: cancel, done: make(chan error, 1)}
	go func() { f.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { f.shutdown() })
	return f, logs
}

type reply struct {
	status int
	header http.Header
	body   string
}

// send makes a request to the fixture's server with exactly these headers
// ("Host" sets the Host header; the connection goes to the server).
func send(t *testing.T, f *fixture, method, path, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.client.BaseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func (r reply) is(status int, code string) bool {
	if r.status != status {
		return false
	}
	if code == "" {
		return true
	}
	var eb server.ErrorBody
	return json.Unmarshal([]byte(r.body), &eb) == nil && eb.Error.Code == code
}

func port(t *testing.T, f *fixture) string {
	_, p, err := net.SplitHostPort(f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func noRuns(t *testing.T, f *fixture) {
	t.Helper()
	runs, err := f.env.Store.List(bg, journal.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 0 {
		t.Fatalf("a refused request created %d runs: %s", len(runs), runs[0].ID)
	}
}

// The request a web page can send with fetch(url, {mode: "no-cors"}) and a
// Blob body: no Content-Type, a foreign Origin, and, under DNS rebinding,
// a foreign Host. Each of the three alone is refused, nothing starts, and
// the answers say what to configure.
func TestWebPagesCannotDriveTheAPI(t *testing.T) {
	f, logs := secureServer(t, server.Options{AllowInlineSource: true})
	p := port(t, f)
	own := "127.0.0.1:" + p
	start := `{"id": "csrf1", "source": "def main(input):\n    return 1\n"}`

	cases := []struct {
		name   string
		hdr    []string
		status int
		code   string
		msg    string
	}{
		{"everything foreign", []string{"Host", "attacker.example:" + p, "Origin", "https://evil.example"}, 421, "misdirected_host", "--allow-host"},
		{"foreign host (DNS rebinding)", []string{"Host", "attacker.example:" + p, "Content-Type", "application/json"}, 421, "misdirected_host", "127.0.0.1:" + p},
		{"foreign origin", []string{"Host", own, "Origin", "https://evil.example", "Content-Type", "application/json"}, 403, "forbidden_origin", "--allow-origin"},
		{"another loopback origin", []string{"Host", own, "Origin", "http://127.0.0.1:1", "Content-Type", "application/json"}, 403, "forbidden_origin", ""},
		{"origin null", []string{"Host", own, "Origin", "null", "Content-Type", "application/json"}, 403, "forbidden_origin", ""},
		{"no content type", []string{"Host", own}, 415, "unsupported_media_type", "Content-Type: application/json"},
		{"text/plain", []string{"Host", own, "Content-Type", "text/plain"}, 415, "unsupported_media_type", ""},
		{"form", []string{"Host", own, "Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", ""},
	}
	for _, c := range cases {
		r := send(t, f, "POST", "/v1/runs", start, c.hdr...)
		if !r.is(c.status, c.code) || !strings.Contains(r.body, c.msg) {
			t.Errorf("%s: %d %s; want %d %s mentioning %q", c.name, r.status, r.body, c.status, c.code, c.msg)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS header without configuration", c.name)
		}
	}
	noRuns(t, f)
	if !strings.Contains(logs.String(), `"code":"misdirected_host"`) || !strings.Contains(logs.String(), `"message":"refused request"`) {
		t.Errorf("refusals not logged: %s", logs.String())
	}

	// Bodiless state changes need the header too.
	for _, path := range []string{"/v1/runs/x/cancel", "/v1/runs/x/resume"} {
		if r := send(t, f, "POST", path, ""); !r.is(415, "unsupported_media_type") {
			t.Errorf("bodiless POST %s: %d %s", path, r.status, r.body)
		}
		if r := send(t, f, "POST", path, "", "Content-Type", "application/json"); !r.is(404, "not_found") {
			t.Errorf("bodiless POST %s with the header: %d %s", path, r.status, r.body)
		}
	}
	// A charset parameter is fine; a look-alike is not.
	if r := send(t, f, "POST", "/v1/runs", start, "Content-Type", "application/json; charset=utf-8"); !r.is(201, "") {
		t.Errorf("application/json; charset=utf-8: %d %s", r.status, r.body)
	}
	if r := send(t, f, "POST", "/v1/runs", `{"source": "def main(input):\n    return 1\n"}`, "Content-Type", "application/jsonx"); !r.is(415, "") {
		t.Errorf("application/jsonx: %d %s", r.status, r.body)
	}
}

// Reads are guarded too: under DNS rebinding a page's requests carry its
// own name, so it can never read results.
func TestForeignHostIsRefusedOnReads(t *testing.T) {
	f, _ := secureServer(t, server.Options{AllowedHosts: []string{"starflow.example.com", "10.1.2.3:8443"}})
	p := port(t, f)
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:" + p, true},
		{"localhost:" + p, true},
		{"LOCALHOST:" + p, true},
		{"[::1]:" + p, true},
		{"starflow.example.com", true},       // configured without a port: any port
		{"starflow.example.com:443", true},   //
		{"10.1.2.3:8443", true},              // configured with a port: that one
		{"10.1.2.3:8444", false},             //
		{"attacker.example:" + p, false},     // DNS rebinding
		{"localhost:1", false},               // another port
		{"localhost", false},                 // no port
		{"127.0.0.1", false},                 //
		{"localhost.:" + p, false},           //
		{"evil.starflow.example.com", false}, // configured names are exact
		{"192.168.1.9:" + p, false},          // the server listens on loopback only
	} {
		for _, path := range []string{"/v1/health", "/v1/runs", "/v1/runs/x", "/metrics"} {
			r := send(t, f, "GET", path, "", "Host", c.host)
			if c.ok == (r.status == 421) || (!c.ok && !r.is(421, "misdirected_host")) {
				t.Errorf("GET %s with Host %s: %d %s", path, c.host, r.status, r.body)
			}
		}
	}
}

// A non-loopback listener answers to its address and, when it listens on
// every address, to any IP address (which DNS rebinding cannot produce),
// but not to names it was not given.
func TestHostsOfOtherListeners(t *testing.T) {
	f, _ := secureServer(t, server.Options{Addr: "0.0.0.0:0", Token: "tok"})
	p := port(t, f)
	for host, ok := range map[string]bool{"127.0.0.1:" + p: true, "10.9.8.7:" + p: true, "[fe80::1]:" + p: true, "attacker.example:" + p: false, "localhost:" + p: false, "10.9.8.7:1": false} {
		r := send(t, f, "GET", "/v1/health", "", "Host", host, "Authorization", "Bearer tok")
		if ok != (r.status == 200) {
			t.Errorf("Host %s: %d %s", host, r.status, r.body)
		}
	}
	for _, bad := range []string{"https://x.example", "x.example/path", "*.example.com", ""} {
		if _, err := server.New(f.env.RT, server.Options{AllowedHosts: []string{bad}}); err == nil {
			t.Errorf("allowed host %q accepted", bad)
		}
	}
	for _, bad := range []string{"x.example", "https://x.example/path", "ftp://x.example", "*"} {
		if _, err := server.New(f.env.RT, server.Options{AllowedOrigins: []string{bad}}); err == nil {
			t.Errorf("allowed origin %q accepted", bad)
		}
	}
}

// CORS is off unless configured; a configured origin gets its headers and
// proper preflight answers, and still needs the token.
func TestCORSOnlyForConfiguredOrigins(t *testing.T) {
	f, _ := secureServer(t, server.Options{Token: "tok", AllowedOrigins: []string{"https://Console.Example.com:443"}})
	p := port(t, f)
	const console = "https://console.example.com"

	pre := send(t, f, "OPTIONS", "/v1/runs", "", "Origin", console, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	h := pre.header
	if pre.status != 204 || h.Get("Access-Control-Allow-Origin") != console || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") ||
		h.Get("Access-Control-Allow-Credentials") != "" || !strings.Contains(h.Get("Vary"), "Origin") {
		t.Fatalf("preflight from a configured origin: %d %v %s", pre.status, h, pre.body)
	}
	if r := send(t, f, "OPTIONS", "/v1/runs", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST"); !r.is(403, "forbidden_origin") || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v %s", r.status, r.header, r.body)
	}
	r := send(t, f, "GET", "/v1/runs", "", "Origin", console, "Authorization", "Bearer tok")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != console {
		t.Fatalf("GET from the console: %d %v", r.status, r.header)
	}
	if r := send(t, f, "GET", "/v1/runs", "", "Origin", console); !r.is(401, "unauthorized") {
		t.Fatalf("GET from the console without the token: %d %s", r.status, r.body)
	}
	// The server's own origin needs no configuration and gets no CORS
	// headers (same-origin requests need none).
	if r := send(t, f, "GET", "/v1/runs", "", "Origin", "http://127.0.0.1:"+p, "Authorization", "Bearer tok"); r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("own origin: %d %v", r.status, r.header)
	}
}

// The bearer scheme is case-insensitive (RFC 9110, 11.1); the token is not.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	f, _ := secureServer(t, server.Options{Token: "s3cret-Token"})
	for _, h := range []string{"Bearer s3cret-Token", "bearer s3cret-Token", "BEARER s3cret-Token", "Bearer  s3cret-Token"} {
		if r := send(t, f, "GET", "/v1/health", "", "Authorization", h); r.status != 200 {
			t.Errorf("%q: %d %s", h, r.status, r.body)
		}
	}
	for _, h := range []string{"bearer s3cret-token", "Bearers3cret-Token", "Basic s3cret-Token", "s3cret-Token", "Bearer", "Bearer s3cret-Token x"} {
		if r := send(t, f, "GET", "/v1/health", "", "Authorization", h); !r.is(401, "unauthorized") || strings.Contains(r.body, "s3cret") {
			t.Errorf("%q: %d %s", h, r.status, r.body)
		}
	}
}

// Code in requests runs only when the server was started to accept it;
// script files in its directory always do. The CLI's client works.
func TestInlineSourceIsOffByDefault(t *testing.T) {
	dir := t.TempDir()
	f, _ := secureServer(t, server.Options{ScriptDir: dir})
	writeFile(t, dir+"/ask.star", "def main(input):\n    return ask_human('ok?')\n")
	for _, req := range []server.StartRequest{
		{ID: "s1", Source: "def main(input):\n    return 1\n"},
		{ID: "s2", Entry: "m.star", Sources: map[string]string{"m.star": "def main(input):\n    return 1\n"}},
	} {
		_, err := f.client.Start(bg, req)
		ae, ok := err.(*server.APIError)
		if !ok || ae.Status != 403 || ae.Code != "inline_source_disabled" || !strings.Contains(ae.Message, "--allow-inline-source") || !strings.Contains(ae.Message, `"script"`) {
			t.Fatalf("inline start: %v", err)
		}
	}
	noRuns(t, f)

	// The client: start a script file, read, resume (bodiless), migrate and
	// fork with new code (refused), cancel.
	r, err := f.client.Start(bg, server.StartRequest{ID: "a", Script: "ask.star", Wait: "5s"})
	if err != nil || r.Status != journal.StatusWaiting {
		t.Fatalf("start a script file: %+v %v", r, err)
	}
	code := server.CodeRequest{Entry: "ask.star", Sources: map[string]string{"ask.star": "def main(input):\n    return ask_human('ok?')\n"}}
	if _, err := f.client.Migrate(bg, "a", code); err == nil || !strings.Contains(err.Error(), "inline_source_disabled") {
		t.Fatalf("migrate with code: %v", err)
	}
	if _, err := f.client.Fork(bg, "a", server.ForkRequest{At: 0, Entry: code.Entry, Sources: code.Sources}); err == nil || !strings.Contains(err.Error(), "inline_source_disabled") {
		t.Fatalf("fork with code: %v", err)
	}
	if rep, err := f.client.Check(bg, "a", code); err != nil || !rep.OK {
		t.Fatalf("check (a dry replay, allowed): %+v %v", rep, err)
	}
	if r, err := f.client.Cancel(bg, "a", "test"); err != nil || r.Status != journal.StatusCancelled {
		t.Fatalf("cancel: %+v %v", r, err)
	}
	if _, err := f.client.Resume(bg, "a"); err == nil || !strings.Contains(err.Error(), "HTTP 409 conflict") {
		t.Fatalf("resume (bodiless) of a cancelled run: %v", err)
	}
	if runs, err := f.client.List(bg, nil, 0); err != nil || len(runs) != 1 {
		t.Fatalf("list: %v %v", runs, err)
	}
}

// Bodies that are not UTF-8 are refused naming the byte, not decoded with
// replacement characters; a body that says it is too large is refused
// before it is read.
func TestBodiesMustBeUTF8AndSmall(t *testing.T) {
	f, _ := secureServer(t, server.Options{AllowInlineSource: true, MaxBodyBytes: 1000})
	body := "{\"source\": \"def main(input):\\n    return 1\\n\", \"input\": \"a\xffb\"}"
	r := send(t, f, "POST", "/v1/runs", body, "Content-Type", "application/json")
	if !r.is(400, "invalid_request") || !strings.Contains(r.body, fmt.Sprintf("not valid UTF-8: byte 0xff at offset %d", strings.IndexByte(body, 0xff))) {
		t.Fatalf("non-UTF-8 body: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest("POST", f.client.BaseURL+"/v1/runs", io.MultiReader(strings.NewReader(`{"input": "`), neverEnding{}))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = 1 << 40
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(b), "limit of 1000 bytes") || !strings.Contains(string(b), "--max-body") {
		t.Fatalf("huge body: %d %s", resp.StatusCode, b)
	}
	noRuns(t, f)
}

type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}
