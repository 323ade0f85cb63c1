// Package runtest is the test harness for code built on the runtime: a
// runtime over a real Badger store in a temporary directory, a settable
// clock, a host builtin with a visible side effect, and journal surgery
// that simulates a crash after any record, or a deploy of changed code.
package runtest

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to 2026-11-27 12:00 UTC.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Counter is a host builtin with a visible side effect: it counts how often
// it ran, per idempotency key.
type Counter struct {
	mu   sync.Mutex
	Keys map[string]int
	runs atomic.Int64
}

// NewCounter returns an empty counter.
func NewCounter() *Counter { return &Counter{Keys: map[string]int{}} }

// Builtin is bump(*args): it counts its execution under the call's
// idempotency key and returns {"n": executions so far, "args": args}.
func (c *Counter) Builtin() *runtime.Builtin {
	return runtime.Func("bump", func(ctx context.Context, call *runtime.Call) (any, error) {
		c.mu.Lock()
		c.Keys[call.Key]++
		c.mu.Unlock()
		n := c.runs.Add(1)
		args, _, err := call.GoArgs()
		if err != nil {
			return nil, err
		}
		return map[string]any{"n": n, "args": args}, nil
	})
}

// Echo is echo(*args, **kwargs): a journaled builtin that returns its
// positional arguments as a tuple (or the single argument itself), so tests
// can check that values survive the journal unchanged.
func Echo() *runtime.Builtin {
	return &runtime.Builtin{Name: "echo", Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
		if len(c.Args) == 1 {
			return c.Args[0], nil
		}
		return c.Args, nil
	}}
}

// Total is how many times bump ran.
func (c *Counter) Total() int { return int(c.runs.Load()) }

// Runs returns how many times bump ran under key.
func (c *Counter) Runs(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Keys[key]
}

// Env is a runtime over a fresh Badger store.
type Env struct {
	T     testing.TB
	Dir   string
	Store *badgerstore.Store
	RT    *runtime.Runtime
	Clock *Clock
	Logs  *LogBuffer // what the runtime logged, as JSON lines
	Count *Counter
	Opts  runtime.Options
}

// New builds an Env: standard builtins and globals plus bump, the settable
// clock, logs captured. mod adjusts the options before the runtime is built.
func New(t testing.TB, mod ...func(*runtime.Options)) *Env {
	t.Helper()
	e := &Env{T: t, Dir: t.TempDir(), Clock: NewClock(), Logs: &LogBuffer{}, Count: NewCounter()}
	s, err := badgerstore.Open(e.Dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.Store = s
	t.Cleanup(func() { e.Store.Close() })
	e.Opts = runtime.Options{
		Builtins: append(builtins.Standard(), e.Count.Builtin(), Echo()),
		Globals:  builtins.Globals(),
		Clock:    e.Clock.Now,
		Logger:   zerolog.New(e.Logs),
	}
	for _, m := range mod {
		m(&e.Opts)
	}
	e.RT, err = runtime.New(s, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// LogBuffer collects log lines written from many goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns what was written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Start starts run id of the script src (named wf.star) with a JSON input.
func (e *Env) Start(id, src, input string) *runtime.Outcome {
	e.T.Helper()
	out, err := e.RT.Start(bg, runtime.StartRequest{ID: id, Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}, Input: json.RawMessage(input)})
	if err != nil {
		e.T.Fatalf("Start: %v", err)
	}
	return out
}

// Resume resumes run id.
func (e *Env) Resume(id string) *runtime.Outcome {
	e.T.Helper()
	out, err := e.RT.Resume(bg, id)
	if err != nil {
		e.T.Fatalf("Resume: %v", err)
	}
	return out
}

// Records returns run id's journal.
func (e *Env) Records(id string) []journal.Record {
	e.T.Helper()
	recs, err := e.Store.Records(bg, id, 1)
	if err != nil {
		e.T.Fatal(err)
	}
	return recs
}

// Calls returns the builtin names of run id's call.started records.
func (e *Env) Calls(id string) []string {
	var out []string
	for _, r := range e.Records(id) {
		if r.Type == journal.TypeCallStarted {
			var cs journal.CallStarted
			r.Decode(&cs)
			out = append(out, cs.Builtin)
		}
	}
	return out
}

// Clone copies run id's first n records (up to, not including, its
// run.finished record) into a new run newID: the state a crash after
// record n would leave. If src is not empty, the clone's pinned entry
// script is replaced by src: a deploy of changed code.
func (e *Env) Clone(id, newID string, n int, src string) {
	e.T.Helper()
	recs := e.Records(id)
	if n > len(recs) {
		n = len(recs)
	}
	var st journal.RunStarted
	if err := recs[0].Decode(&st); err != nil {
		e.T.Fatal(err)
	}
	if src != "" {
		h, err := e.Store.PutBlob(bg, []byte(src))
		if err != nil {
			e.T.Fatal(err)
		}
		st.Script.Files[st.Script.Entry] = h
	}
	first, _ := journal.NewRecord(1, journal.TypeRunStarted, recs[0].Time, st)
	out := []journal.Record{first}
	for _, r := range recs[1:n] {
		if r.Type == journal.TypeRunFinished {
			break
		}
		out = append(out, r)
	}
	meta := &journal.Run{ID: newID, Status: journal.StatusRunning, Script: st.Script.Entry, Durability: st.Durability, CreatedAt: recs[0].Time}
	if err := e.Store.Create(bg, meta, out); err != nil {
		e.T.Fatal(err)
	}
}

// MustResult fails unless out completed with a result equal (as JSON) to
// want.
func MustResult(t testing.TB, out *runtime.Outcome, want string) {
	t.Helper()
	if out.Status != journal.StatusCompleted {
		t.Fatalf("status %s, error %v; want completed", out.Status, out.Error)
	}
	if !SameJSON(out.Result, []byte(want)) {
		t.Fatalf("result %s, want %s", out.Result, want)
	}
}

// SameJSON reports whether a and b are the same JSON value.
func SameJSON(a, b []byte) bool { return value.SameJSON(a, b) }

// Completions returns the call.completed records of run id, decoded, in
// journal order: the place to read each call's journaled detail.
func Completions(t testing.TB, s journal.Store, id string) []journal.CallCompleted {
	t.Helper()
	recs, err := s.Records(bg, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out []journal.CallCompleted
	for _, r := range recs {
		if r.Type != journal.TypeCallCompleted {
			continue
		}
		var cc journal.CallCompleted
		if err := r.Decode(&cc); err != nil {
			t.Fatal(err)
		}
		out = append(out, cc)
	}
	return out
}

// Details returns the journaled detail of each completed call of run id, in
// order, decoded as JSON objects (nil where a call recorded none).
func Details(t testing.TB, s journal.Store, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, cc := range Completions(t, s, id) {
		var d map[string]any
		if len(cc.Detail) > 0 {
			if err := json.Unmarshal(cc.Detail, &d); err != nil {
				t.Fatalf("detail of step %s: %v", cc.Step, err)
			}
		}
		out = append(out, d)
	}
	return out
}

// ResultObject decodes a completed run's result as a JSON object.
func ResultObject(t testing.TB, out *runtime.Outcome) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(out.Result, &m); err != nil {
		t.Fatalf("result %s: %v", out.Result, err)
	}
	return m
}
