package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/starflow/starflow/internal/runtest"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins"
	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// fast is a retry policy for tests that are not about the wait itself.
var fast = runtime.RetryPolicy{InitialInterval: 10 * time.Millisecond, Jitter: -1}

// harness is a runtime with the http module over a real Badger store.
// Its clock is settable and it skips waits (runtime.Options.SkipWaits):
// waits between attempts move the runtime's clock instead of sleeping.
type harness struct {
	t     testing.TB
	dir   string
	store *badgerstore.Store
	rt    *runtime.Runtime
	mod   *sfhttp.Module
	logs  *logBuffer
	clock *runtest.Clock
}

type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(line string)
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	fn := l.onLine
	l.mu.Unlock()
	if fn != nil {
		fn(string(p))
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newHarness(t testing.TB, opts sfhttp.Options, rtOpts ...func(*runtime.Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), logs: &logBuffer{}, clock: runtest.NewClock()}
	s, err := badgerstore.Open(h.dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.store = s
	t.Cleanup(func() { s.Close() })
	h.mod, err = sfhttp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ro := runtime.Options{
		Builtins:  append(builtins.Standard(), h.mod.Builtins()...),
		Globals:   globals(h.mod),
		Logger:    zerolog.New(h.logs),
		MaxCalls:  10_000_000,
		Clock:     h.clock.Now,
		SkipWaits: true,
	}
	for _, f := range rtOpts {
		f(&ro)
	}
	h.rt, err = runtime.New(s, ro)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// globals are the standard helpers plus the http module's.
func globals(m *sfhttp.Module) starlark.StringDict {
	g := builtins.Globals()
	for k, v := range m.Globals() {
		g[k] = v
	}
	return g
}

func (h *harness) start(id, src string, input any) *runtime.Outcome {
	h.t.Helper()
	in, err := json.Marshal(input)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := h.rt.Start(bg, runtime.StartRequest{ID: id, Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}, Input: in})
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return out
}

func (h *harness) resume(id string) *runtime.Outcome {
	h.t.Helper()
	out, err := h.rt.Resume(bg, id)
	if err != nil {
		h.t.Fatalf("Resume: %v", err)
	}
	return out
}

// waited returns how far skipped waits have moved the runtime's clock.
func (h *harness) waited() time.Duration { return h.rt.Now().Sub(h.clock.Now()) }

// result runs src and returns main's result decoded from JSON.
func (h *harness) result(id, src string, input any) map[string]any {
	h.t.Helper()
	out := h.start(id, src, input)
	if out.Status != journal.StatusCompleted {
		h.t.Fatalf("run %s: status %s, error %+v", id, out.Status, out.Error)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Result, &m); err != nil {
		h.t.Fatalf("result %s: %v", out.Result, err)
	}
	return m
}

// detail mirrors the JSON the http builtin stores with each call.
type detail struct {
	Method         string `json:"method"`
	URL            string `json:"url"`
	IdempotencyKey string `json:"idempotency_key"`
	Status         int    `json:"status"`
	Stopped        string `json:"stopped"`
	Attempts       []struct {
		N            int    `json:"n"`
		Status       int    `json:"status"`
		Kind         string `json:"kind"`
		Error        string `json:"error"`
		DurationMs   int64  `json:"duration_ms"`
		RetryAfterMs int64  `json:"retry_after_ms"`
		WaitMs       int64  `json:"wait_ms"`
	} `json:"attempts"`
}

// details returns the journal details of a run's completed calls, by step.
func (h *harness) details(id string) map[string]detail {
	h.t.Helper()
	out := map[string]detail{}
	for _, cc := range runtest.Completions(h.t, h.store, id) {
		var d detail
		if len(cc.Detail) > 0 {
			if err := json.Unmarshal(cc.Detail, &d); err != nil {
				h.t.Fatalf("detail %s: %v", cc.Detail, err)
			}
		}
		out[cc.Step] = d
	}
	return out
}

// request is what a test server saw.
type request struct {
	At     time.Time // on the server's clock (see server.useClock)
	Method string
	Path   string
	Query  string
	Header nethttp.Header
	Body   string
}

// server is a loopback HTTP server that records requests and answers
// with fn (n counts requests from 1).
type server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
	now  func() time.Time
}

// useClock makes the server record when requests arrive on clock (a
// runtime's, to see the waits it made between them).
func (s *server) useClock(clock func() time.Time) {
	s.mu.Lock()
	s.now = clock
	s.mu.Unlock()
}

func newServer(t testing.TB, fn func(n int, w nethttp.ResponseWriter, r *nethttp.Request)) *server {
	t.Helper()
	s := &server{now: time.Now}
	s.Server = httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, request{At: s.now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
		n := len(s.reqs)
		s.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		fn(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

func (s *server) count() int { return len(s.requests()) }

// statuses answers the n-th request with codes[n-1] (the last one after
// that) and a small JSON body.
func statuses(codes ...int) func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
	return func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		code := codes[min(n, len(codes))-1]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"n": %d, "status": %d}`, n, code)
	}
}

// input is a script input with the server's URL.
func input(url string, more ...any) map[string]any {
	m := map[string]any{"url": url}
	for i := 0; i+1 < len(more); i += 2 {
		m[more[i].(string)] = more[i+1]
	}
	return m
}
