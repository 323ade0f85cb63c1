package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)} }
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// counter is a host builtin with a visible side effect: it counts how often
// it ran per idempotency key.
type counter struct {
	mu   sync.Mutex
	keys map[string]int
	runs atomic.Int64
}

func newCounter() *counter { return &counter{keys: map[string]int{}} }

func (c *counter) builtin() *runtime.Builtin {
	return runtime.Func("bump", func(ctx context.Context, call *runtime.Call) (any, error) {
		c.mu.Lock()
		c.keys[call.Key]++
		c.mu.Unlock()
		n := c.runs.Add(1)
		args, _, err := call.GoArgs()
		if err != nil {
			return nil, err
		}
		return map[string]any{"n": n, "args": args}, nil
	})
}

func (c *counter) total() int { return int(c.runs.Load()) }

type env struct {
	t     *testing.T
	dir   string
	store *badgerstore.Store
	rt    *runtime.Runtime
	clock *fakeClock
	logs  *bytes.Buffer
	count *counter
	opts  runtime.Options
}

func newEnv(t *testing.T, mod ...func(*runtime.Options)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: newClock(), logs: &bytes.Buffer{}, count: newCounter()}
	s, err := badgerstore.Open(e.dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.store = s
	t.Cleanup(func() { e.store.Close() })
	e.opts = runtime.Options{
		Builtins: append(builtins.Standard(), e.count.builtin()),
		Globals:  builtins.Globals(),
		Clock:    e.clock.Now,
		Logger:   zerolog.New(&syncWriter{w: e.logs}),
	}
	for _, m := range mod {
		m(&e.opts)
	}
	e.rt, err = runtime.New(s, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (e *env) start(id, src string, input string) *runtime.Outcome {
	e.t.Helper()
	out, err := e.rt.Start(bg, runtime.StartRequest{ID: id, Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}, Input: json.RawMessage(input)})
	if err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	return out
}

func (e *env) resume(id string) *runtime.Outcome {
	e.t.Helper()
	out, err := e.rt.Resume(bg, id)
	if err != nil {
		e.t.Fatalf("Resume: %v", err)
	}
	return out
}

func (e *env) records(id string) []journal.Record {
	e.t.Helper()
	recs, err := e.store.Records(bg, id, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// calls returns the builtin names of a run's call.started records.
func (e *env) calls(id string) []string {
	var out []string
	for _, r := range e.records(id) {
		if r.Type == journal.TypeCallStarted {
			var cs journal.CallStarted
			r.Decode(&cs)
			out = append(out, cs.Builtin)
		}
	}
	return out
}

// cloneWithScript copies run id's journal (its first n records) into a new
// run whose pinned entry script is replaced by src: a crash after record n
// when n is short of the end, or a deploy of new code when src differs.
func (e *env) cloneWithScript(id, newID string, n int, src string) {
	e.t.Helper()
	recs := e.records(id)
	if n > len(recs) {
		n = len(recs)
	}
	var st journal.RunStarted
	if err := recs[0].Decode(&st); err != nil {
		e.t.Fatal(err)
	}
	if src != "" {
		h, err := e.store.PutBlob(bg, []byte(src))
		if err != nil {
			e.t.Fatal(err)
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
	if err := e.store.Create(bg, meta, out); err != nil {
		e.t.Fatal(err)
	}
}

func mustJSON(t *testing.T, out *runtime.Outcome, want string) {
	t.Helper()
	if out.Status != journal.StatusCompleted {
		t.Fatalf("status %s, error %v; want completed", out.Status, out.Error)
	}
	var a, b any
	if err := json.Unmarshal(out.Result, &a); err != nil {
		t.Fatalf("result %s: %v", out.Result, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("result %s, want %s", out.Result, want)
	}
}

func failingBuiltin(name string, failures int, errFor func(n int) error) (*runtime.Builtin, *atomic.Int64) {
	var calls atomic.Int64
	b := &runtime.Builtin{
		Name: name,
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			n := int(calls.Add(1))
			if n <= failures {
				return nil, errFor(n)
			}
			return starlark.String(fmt.Sprintf("ok after %d", n)), nil
		},
	}
	return b, &calls
}

var errBoom = errors.New("boom")
