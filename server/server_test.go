package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

var bg = context.Background()

type fixture struct {
	t      *testing.T
	env    *runtest.Env
	srv    *server.Server
	client *server.Client
	stop   context.CancelFunc
	done   chan error
}

// start runs a server over a fresh store on a free loopback port.
func start(t *testing.T, opts server.Options, mod ...func(*runtime.Options)) *fixture {
	t.Helper()
	mods := append([]func(*runtime.Options){func(o *runtime.Options) {
		o.Clock = time.Now
		o.MaxInlineWait = 20 * time.Millisecond
	}}, mod...)
	e := runtest.New(t, mods...)
	return serveOn(t, e, opts)
}

func serveOn(t *testing.T, e *runtest.Env, opts server.Options) *fixture {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	opts.Logger = zerolog.Nop()
	opts.AllowInlineSource = true // these tests send code inline; security_test.go tests the default
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
	return f
}

func (f *fixture) shutdown() error {
	if f.stop == nil {
		return nil
	}
	f.stop()
	f.stop = nil
	return <-f.done
}

// waitStatus polls until the run has the status.
func (f *fixture) waitStatus(id string, want journal.Status) *server.RunResponse {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := f.client.Wait(bg, id, time.Second)
		if err == nil && r.Status == want && !r.Active && !r.Queued {
			return r
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("run %s: status %v (err %v), want %s", id, r.Status, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const approval = `
def main(input):
    draft = bump("draft")
    progress({"stage": "review"})
    decision = ask_human("Approve?", choices = ["yes", "no"])
    return {"decision": decision, "drafts": draft["n"]}
`

func TestAPIAskAnswerResume(t *testing.T) {
	f := start(t, server.Options{})
	r, err := f.client.Start(bg, server.StartRequest{ID: "a1", Source: approval, Wait: "5s"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != journal.StatusWaiting || r.Question == nil || r.Question.Prompt != "Approve?" || string(r.Progress) != `{"stage":"review"}` {
		t.Fatalf("start: %+v", r)
	}
	// Idempotent on id: the same start returns the same run, runs nothing.
	again, err := f.client.Start(bg, server.StartRequest{ID: "a1", Source: approval})
	if err != nil || !again.Existed || again.Status != journal.StatusWaiting {
		t.Fatalf("second start: %+v %v", again, err)
	}
	// A bad answer is refused with 422 and a message.
	_, err = f.client.Answer(bg, "a1", json.RawMessage(`"maybe"`), "alice")
	var ae *server.APIError
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Code != "rejected" || !strings.Contains(ae.Message, "not one of the choices") {
		t.Fatalf("bad answer: %v", err)
	}
	m, err := f.client.Answer(bg, "a1", json.RawMessage(`"yes"`), "alice")
	if err != nil || !m.Woke {
		t.Fatalf("answer: %+v %v", m, err)
	}
	done := f.waitStatus("a1", journal.StatusCompleted)
	if !runtest.SameJSON(done.Result, []byte(`{"decision":"yes","drafts":1}`)) || f.env.Count.Total() != 1 {
		t.Fatalf("result %s, bump ran %d times", done.Result, f.env.Count.Total())
	}
	evs, err := f.client.History(bg, "a1")
	if err != nil || evs[0].Type != "run.started" || evs[len(evs)-1].Type != "run.finished" {
		t.Fatalf("history: %v %v", len(evs), err)
	}
	// A finished run takes no answers (409).
	_, err = f.client.Answer(bg, "a1", json.RawMessage(`"no"`), "")
	if !errors.As(err, &ae) || ae.Status != 409 {
		t.Fatalf("answer to finished run: %v", err)
	}
	runs, err := f.client.List(bg, []journal.Status{journal.StatusCompleted}, 0)
	if err != nil || len(runs) != 1 || runs[0].ID != "a1" {
		t.Fatalf("list: %v %v", runs, err)
	}
}

func TestTimersAndSignals(t *testing.T) {
	f := start(t, server.Options{})
	// The sleep is longer than the inline limit: it suspends, and the
	// server's timer wakes it.
	_, err := f.client.Start(bg, server.StartRequest{ID: "s1", Source: "def main(input):\n    sleep(0.3)\n    return 'woke'\n"})
	if err != nil {
		t.Fatal(err)
	}
	// A signal sent before the script waits for it is kept.
	_, err = f.client.Start(bg, server.StartRequest{ID: "g1", Source: "def main(input):\n    sleep(0.2)\n    return wait_signal('go')\n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Signal(bg, "g1", "go", json.RawMessage(`{"early": true}`), ""); err != nil {
		t.Fatal(err)
	}
	// And one sent after wakes the run.
	f.client.Start(bg, server.StartRequest{ID: "g2", Source: "def main(input):\n    return wait_signal('go', timeout = '1m')\n", Wait: "5s"})
	m, err := f.client.Signal(bg, "g2", "go", json.RawMessage(`"late"`), "")
	if err != nil || !m.Woke {
		t.Fatalf("late signal: %+v %v", m, err)
	}
	for id, want := range map[string]string{"s1": `"woke"`, "g1": `{"early":true}`, "g2": `"late"`} {
		r := f.waitStatus(id, journal.StatusCompleted)
		if !runtest.SameJSON(r.Result, []byte(want)) {
			t.Fatalf("%s: %s, want %s", id, r.Result, want)
		}
	}
}

func TestCancelThroughAPI(t *testing.T) {
	var started atomic.Bool
	block := &runtime.Builtin{Name: "block", Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
		started.Store(true)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	f := start(t, server.Options{}, func(o *runtime.Options) { o.Builtins = append(o.Builtins, block) })
	f.client.Start(bg, server.StartRequest{ID: "c1", Source: "def main(input):\n    block()\n    bump(1)\n"})
	for !started.Load() {
		time.Sleep(time.Millisecond)
	}
	r, err := f.client.Cancel(bg, "c1", "bob")
	if err != nil || r.Status != journal.StatusCancelled || !strings.Contains(r.Error.Message, "bob") {
		t.Fatalf("cancel: %+v %v", r, err)
	}
	f.client.Start(bg, server.StartRequest{ID: "c2", Source: "def main(input):\n    ask_human('?')\n", Wait: "5s"})
	if r, err := f.client.Cancel(bg, "c2", ""); err != nil || r.Status != journal.StatusCancelled {
		t.Fatalf("cancel waiting: %+v %v", r, err)
	}
	if f.env.Count.Total() != 0 {
		t.Fatal("a cancelled run went on")
	}
}

func raw(t *testing.T, f *fixture, method, path, ctype, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.client.BaseURL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBadRequestsAreRefused(t *testing.T) {
	f := start(t, server.Options{MaxBodyBytes: 4096})
	f.client.Start(bg, server.StartRequest{ID: "done", Source: "def main(input):\n    return 1\n", Wait: "5s"})
	big := `{"source": "` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		method, path, ctype, body string
		status                    int
		want                      string
	}{
		{"POST", "/v1/runs", "application/json", ``, 400, "request body is empty"},
		{"POST", "/v1/runs", "application/json", `{"source": `, 400, "invalid JSON body"},
		{"POST", "/v1/runs", "application/json", `{"sauce": "x"}`, 400, `unknown field \"sauce\"`},
		{"POST", "/v1/runs", "application/json", `{} {}`, 400, "more than one JSON value"},
		{"POST", "/v1/runs", "text/plain", `{}`, 415, "must carry Content-Type: application/json"},
		{"POST", "/v1/runs", "application/json", big, 413, "larger than this server's limit of 4096 bytes"},
		{"POST", "/v1/runs", "application/json", `{}`, 400, "needs script, source or sources"},
		{"POST", "/v1/runs", "application/json", `{"script": "a.star", "source": "x"}`, 400, "not both"},
		{"POST", "/v1/runs", "application/json", `{"script": "../../etc/passwd"}`, 400, "outside the server's script directory"},
		{"POST", "/v1/runs", "application/json", `{"source": "def main(input):\n    return (\n"}`, 400, "inline.star:3:1: syntax error"},
		{"POST", "/v1/runs", "application/json", `{"id": "a/b", "source": "def main(input): return 1"}`, 400, "invalid run id"},
		{"POST", "/v1/runs", "application/json", `{"source": "def main(input):\n  return 1", "wait": "forever"}`, 400, "wait must be a duration"},
		{"GET", "/v1/runs/nope", "", ``, 404, "no run with id nope"},
		{"GET", "/v1/runs/nope/history", "", ``, 404, "no run with id nope"},
		{"POST", "/v1/runs/nope/answer", "application/json", `{"value": 1}`, 404, "no run with id nope"},
		{"POST", "/v1/runs/done/answer", "application/json", `{"value": 1}`, 409, "completed; it takes no more messages"},
		{"POST", "/v1/runs/done/answer", "application/json", `{}`, 400, "value is required"},
		{"POST", "/v1/runs/done/signals/go", "application/json", `{"value": 1}`, 409, "takes no more messages"},
		{"POST", "/v1/runs/done/cancel", "application/json", `{}`, 409, "already completed"},
		{"GET", "/v1/runs?status=sleeping", "", ``, 400, "unknown status"},
		{"GET", "/v1/runs?limit=-3", "", ``, 400, "limit must be"},
		{"GET", "/v2/runs", "", ``, 404, "no such endpoint"},
		{"DELETE", "/v1/runs/done", "application/json", ``, 404, "no such endpoint"},
	}
	for _, c := range cases {
		status, body := raw(t, f, c.method, c.path, c.ctype, c.body)
		if status != c.status || !strings.Contains(body, c.want) || !strings.HasPrefix(body, `{"error":{"code":`) {
			t.Errorf("%s %s %.40q: %d %s; want %d with %q", c.method, c.path, c.body, status, body, c.status, c.want)
		}
	}
}

func TestTokenIsRequired(t *testing.T) {
	if _, err := server.New(runtest.New(t).RT, server.Options{Addr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "requires a bearer token") {
		t.Fatalf("New on 0.0.0.0 without token: %v", err)
	}
	f := start(t, server.Options{Token: "s3cret-token"})
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret-token"}, {"Authorization", "Basic s3cret-token"}} {
		status, body := raw(t, f, "GET", "/v1/health", "", "", h...)
		if status != 401 || !strings.Contains(body, "unauthorized") || strings.Contains(body, "s3cret") {
			t.Fatalf("%v: %d %s", h, status, body)
		}
	}
	if status, _ := raw(t, f, "GET", "/v1/health", "", "", "Authorization", "Bearer s3cret-token"); status != 200 {
		t.Fatalf("right token: %d", status)
	}
	if _, err := f.client.List(bg, nil, 0); err != nil {
		t.Fatalf("client with token: %v", err)
	}
}

// Shutdown lets an in-flight call finish and be journaled, stops the run at
// its next boundary, and a new server over the same store finishes it
// without repeating the call.
func TestGracefulShutdownAndRecovery(t *testing.T) {
	var calls atomic.Int64
	entered := make(chan struct{}, 1)
	slow := runtime.Func("slow", func(ctx context.Context, c *runtime.Call) (any, error) {
		calls.Add(1)
		select {
		case entered <- struct{}{}:
		default:
		}
		time.Sleep(300 * time.Millisecond)
		return "done", nil
	})
	e := runtest.New(t, func(o *runtime.Options) {
		o.Clock = time.Now
		o.Builtins = append(o.Builtins, slow)
	})
	// A grace period far longer than the call: shutdown returns when the
	// call reaches its boundary, not when the grace period ends.
	f := serveOn(t, e, server.Options{ShutdownGrace: time.Hour, AllowInlineSource: true})
	f.client.Start(bg, server.StartRequest{ID: "g", Source: "def main(input):\n    a = slow()\n    b = bump(1)\n    return [a, b['n']]\n"})
	<-entered
	if err := f.shutdown(); err != nil {
		t.Fatal(err)
	}
	meta, _ := e.Store.Run(bg, "g")
	if meta.Status != journal.StatusRunning || e.Count.Total() != 0 {
		t.Fatalf("after shutdown: %s, bump %d", meta.Status, e.Count.Total())
	}
	if got := e.Calls("g"); strings.Join(got, ",") != "slow" {
		t.Fatalf("journal after shutdown: %v", got)
	}
	// A new runtime and server over the same store recover the run.
	rt2, err := runtime.New(e.Store, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	e.RT = rt2
	f2 := serveOn(t, e, server.Options{})
	r := f2.waitStatus("g", journal.StatusCompleted)
	if !runtest.SameJSON(r.Result, []byte(`["done", 1]`)) || calls.Load() != 1 {
		t.Fatalf("recovered: %s, slow ran %d times", r.Result, calls.Load())
	}
}

func TestScriptPathsAndMultiFileSources(t *testing.T) {
	dir := t.TempDir()
	f := start(t, server.Options{ScriptDir: dir})
	writeFile(t, dir+"/flows/main.star", "load('lib.star', 'twice')\ndef main(input):\n    return twice(input)\n")
	writeFile(t, dir+"/flows/lib.star", "def twice(x):\n    return x * 2\n")
	r, err := f.client.Start(bg, server.StartRequest{Script: "flows/main.star", Input: json.RawMessage(`21`), Wait: "5s"})
	if err != nil || !runtest.SameJSON(r.Result, []byte(`42`)) {
		t.Fatalf("script path: %+v %v", r, err)
	}
	r, err = f.client.Start(bg, server.StartRequest{Entry: "m.star", Sources: map[string]string{"m.star": "load('l.star', 'x')\ndef main(input):\n    return x\n", "l.star": "x = 'loaded'\n"}, Wait: "5s"})
	if err != nil || !runtest.SameJSON(r.Result, []byte(`"loaded"`)) {
		t.Fatalf("sources: %+v %v", r, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := osWriteFile(path, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	metrics := server.NewMetrics()
	mod, err := llm.New(llm.Options{Config: llm.DefaultConfig(func(string) string { return "" })})
	if err != nil {
		t.Fatal(err)
	}
	metrics.WatchLLM(mod.Health)
	f := start(t, server.Options{Metrics: metrics, Token: "tok"}, func(o *runtime.Options) {
		o.OnCall = metrics.Observe
		o.Builtins = append(o.Builtins, mod.Builtins()...)
	})
	r, err := f.client.Start(bg, server.StartRequest{ID: "m", Source: "def main(input):\n    bump(1)\n    attempt(sleep, 'never')\n    return llm('hello', model = 'fake').text\n", Wait: "5s"})
	if err != nil || r.Status != journal.StatusCompleted {
		t.Fatalf("%+v %v", r, err)
	}
	if status, _ := raw(t, f, "GET", "/metrics", "", ""); status != 401 {
		t.Fatalf("metrics without the token: %d", status)
	}
	status, body := raw(t, f, "GET", "/metrics", "", "", "Authorization", "Bearer tok")
	for _, want := range []string{
		`starflow_builtin_calls_total{builtin="bump",outcome="ok"} 1`,
		`starflow_builtin_errors_total{builtin="sleep",kind="invalid_argument"} 1`,
		`starflow_builtin_call_duration_seconds_count{builtin="llm"} 1`,
		`starflow_run_executions_total{status="completed"} 1`,
		`starflow_runs_queued 0`,
		`starflow_llm_breaker_open{deployment=`,
		`starflow_llm_deployment_requests_total{deployment=`,
		`go_goroutines`,
	} {
		if status != 200 || !strings.Contains(body, want) {
			t.Fatalf("metrics (HTTP %d) lack %q:\n%s", status, want, body)
		}
	}
}
