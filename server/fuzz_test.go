package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

// fuzzServer is a served API (workers running) with runs to send messages
// to: "ask" waits for an answer, "sig" for a signal, "done" completed.
// Its script directory holds echo.star, which returns its input.
type fuzzServer struct {
	srv  *server.Server
	h    http.Handler
	host string
}

func newFuzzServer(f *testing.F) *fuzzServer {
	dir := f.TempDir()
	if err := osWriteFile(dir+"/echo.star", []byte("def main(input):\n    return input\n")); err != nil {
		f.Fatal(err)
	}
	e := runtest.New(f, func(o *runtime.Options) { o.Clock = time.Now; o.MaxInlineWait = 20 * time.Millisecond })
	srv, err := server.New(e.RT, server.Options{Addr: "127.0.0.1:0", ScriptDir: dir, MaxBodyBytes: 64 << 10, Logger: zerolog.Nop(), AllowInlineSource: true, AllowedOrigins: []string{"https://console.example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	cl := server.NewClient(srv.Addr(), "")
	for id, src := range map[string]string{"ask": "def main(input):\n    return ask_human('ok?', choices = ['yes', 'no'])\n", "sig": "def main(input):\n    return wait_signal('go')\n", "done": "def main(input):\n    return 1\n"} {
		if _, err := cl.Start(bg, server.StartRequest{ID: id, Source: src, Wait: "10s"}); err != nil {
			f.Fatal(err)
		}
	}
	return &fuzzServer{srv: srv, h: srv.Handler(), host: srv.Addr()}
}

// do sends one request through the API's handler and checks what every
// answer must be: no 5xx, JSON, and for a refusal a code and a message.
func (fs *fuzzServer) do(t *testing.T, method, path string, hdr http.Header, body []byte) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	req.Method, req.Host, req.Header, req.Body = method, fs.host, hdr, io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	u, err := req.URL.Parse(path)
	if err != nil {
		return 0, nil
	}
	req.URL = u
	if h := hdr.Get("Host"); h != "" {
		req.Host = h
	}
	// A bound on waits the request asks for ("wait": "10m"), not an
	// assertion about time.
	ctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	fs.h.ServeHTTP(rec, req.WithContext(ctx))
	res := rec.Result()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 500 {
		t.Fatalf("%s %s %v %q: %d %s", method, path, hdr, body, res.StatusCode, out)
	}
	if res.StatusCode == http.StatusNoContent {
		return res.StatusCode, out
	}
	if !json.Valid(out) || !utf8.Valid(out) {
		t.Fatalf("%s %s %q: %d, not JSON: %q", method, path, body, res.StatusCode, out)
	}
	if res.StatusCode >= 400 {
		var eb server.ErrorBody
		if json.Unmarshal(out, &eb) != nil || eb.Error.Code == "" || len(eb.Error.Message) < 10 {
			t.Fatalf("%s %s %q: %d without a clear error: %s", method, path, body, res.StatusCode, out)
		}
	}
	return res.StatusCode, out
}

var fuzzPaths = []string{"/v1/runs", "/v1/runs/ask/answer", "/v1/runs/sig/signals/go", "/v1/runs/ask/cancel", "/v1/runs/done/answer", "/v1/runs/nope/signals/x", "/v1/runs/done/resume", "/v1/runs/ask", "/v1/runs?status=waiting", "/v1/runs/done/fork"}

// FuzzAPIRequest sends start, answer, signal and cancel requests with
// arbitrary bodies and headers: never a panic or a 5xx, always JSON, and
// a refusal always says what was wrong. The seeds run in every go test;
// go test -fuzz FuzzAPIRequest explores.
func FuzzAPIRequest(f *testing.F) {
	fs := newFuzzServer(f)
	add := func(path uint8, method, ctype, origin, host, body string) {
		f.Add(path, method, ctype, origin, host, []byte(body))
	}
	add(0, "POST", "application/json", "", "", `{"id": "f1", "source": "def main(input):\n    return input\n", "input": {"a": [1, 2.5, "x"]}, "wait": "5s"}`)
	add(0, "POST", "application/json", "", "", `{"script": "echo.star", "input": "caf\u00e9", "wait": "5s"}`)
	add(0, "POST", "application/json", "", "", `{"script": "../echo.star"}`)
	add(0, "POST", "application/json", "", "", `{"entry": "m.star", "sources": {"m.star": "load('m.star', 'x')"}}`)
	add(0, "POST", "application/json; charset=utf-8", "", "", `{"source": "def main(input):\n    return (\n"}`)
	add(0, "POST", "application/json", "", "", `{"source": "x", "limits": {"max_steps": -1}, "dialect": {"while": "yes"}}`)
	add(0, "POST", "application/json", "", "", `{"id": "../../etc", "source": "def main(input): return 1", "durability": "never"}`)
	add(0, "POST", "application/json", "", "", "{\"script\": \"echo.star\", \"input\": \"\xff\"}")
	add(0, "POST", "application/json", "", "", `{"script": "echo.star", "input": "\ud800"}`)
	add(0, "POST", "application/json", "", "", `{"script": "echo.star", "input": 1.}`)
	add(0, "POST", "application/json", "", "", `{"script": "echo.star", "wait": "-1s"}`)
	add(0, "POST", "", "https://evil.example", "", `{"script": "echo.star"}`)
	add(0, "POST", "text/plain", "", "", `{"script": "echo.star"}`)
	add(0, "POST", "application/json", "", "attacker.example:1", `{"script": "echo.star"}`)
	add(0, "POST", "application/json", "https://console.example.com", "", `{"script": "echo.star", "wait": "5s"}`)
	add(1, "POST", "application/json", "", "", `{"value": "maybe", "by": "fuzz"}`)
	add(1, "POST", "application/json", "", "", `{"value": "yes"}`)
	add(1, "POST", "application/json", "", "", `{}`)
	add(1, "POST", "application/json", "", "", `{"value": `)
	add(2, "POST", "application/json", "", "", `{"value": {"n": 1e400}}`)
	add(2, "POST", "application/json", "", "", `{"value": null} {"value": 1}`)
	add(3, "POST", "application/json", "", "", ``)
	add(3, "POST", "application/json", "", "", `{"by": 7}`)
	add(3, "POST", "", "", "", ``)
	add(4, "POST", "application/json", "", "", `{"value": true}`)
	add(5, "POST", "application/json", "", "", `{"value": [[[[[]]]]]}`)
	add(6, "POST", "application/json", "", "", ``)
	add(7, "GET", "", "null", "", ``)
	add(8, "OPTIONS", "", "https://console.example.com", "", ``)
	add(9, "POST", "application/json", "", "", `{"at": 1, "set_result": "\udfff"}`)
	add(9, "DELETE", "application/json", "", "", `{}`)
	f.Fuzz(func(t *testing.T, path uint8, method, ctype, origin, host string, body []byte) {
		if len(method) > 10 || strings.ContainsAny(method, " \t\r\n/") || method == "" || method == "CONNECT" {
			method = "POST"
		}
		hdr := http.Header{}
		if ctype != "" {
			hdr.Set("Content-Type", ctype)
		}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		if method == "OPTIONS" {
			hdr.Set("Access-Control-Request-Method", "POST")
		}
		if host != "" {
			hdr.Set("Host", host)
		}
		fs.do(t, method, fuzzPaths[int(path)%len(fuzzPaths)], hdr, body)
	})
}

// FuzzStartInput starts echo.star with an arbitrary input: either the run
// completes with the input's meaning as its result, or the request is
// refused with a clear 4xx. The input arrives as the API receives it, raw
// bytes inside the request body.
func FuzzStartInput(f *testing.F) {
	fs := newFuzzServer(f)
	for _, s := range []string{`null`, `0`, `-0`, `1.5`, `1e400`, `123456789012345678901234567890`, `"x"`, `{"a": [1, {"b": null}], "a": 2}`,
		`[1, "two", 3.0]`, `"\u00e9\ud83d\ude00"`, "\"caf\xe9\"", `"\ud800"`, `1.`, `01`, `[1 2]`, `{"k": "v",}`, `"\x01"`, `{}`, ``, ` `, `[]]`, strings.Repeat("[", 1200) + strings.Repeat("]", 1200)} {
		f.Add([]byte(s))
	}
	n := 0
	f.Fuzz(func(t *testing.T, input []byte) {
		n++
		body := append(append([]byte(fmt.Sprintf(`{"id": "in-%d-%d", "script": "echo.star", "wait": "5s", "input": `, time.Now().UnixNano(), n)), input...), '}')
		status, out := fs.do(t, "POST", "/v1/runs", http.Header{"Content-Type": {"application/json"}}, body)
		if status >= 400 {
			return
		}
		if status != http.StatusCreated {
			t.Fatalf("input %q: %d %s", input, status, out)
		}
		var r server.RunResponse
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Status == journal.StatusCompleted:
			want := bytes.TrimSpace(input)
			if len(want) == 0 {
				want = []byte("null")
			}
			if !sameMeaning(r.Result, want) {
				t.Fatalf("input %q: result %s", input, r.Result)
			}
		case r.Status == journal.StatusFailed && r.Error != nil && r.Error.Message != "":
			// A clear failure (for example an input nested too deeply for
			// the result).
		default:
			t.Fatalf("input %q: %s %+v", input, r.Status, r.Error)
		}
	})
}

// sameMeaning compares JSON texts by meaning: integers exactly (-0 is
// 0), other numbers as the float64 they become in a run.
func sameMeaning(a, b []byte) bool { return value.SameJSON(a, b) }
