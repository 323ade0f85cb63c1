package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	sfrt "github.com/starflow/starflow/runtime"
)

// pausing wraps a builtin so that, when it asks to wait, it stops right
// there until released: the moment between a builtin finding nothing in
// its inbox and the run committing its wait.
func pausing(b *sfrt.Builtin) (*sfrt.Builtin, chan struct{}, chan struct{}) {
	paused, release := make(chan struct{}, 1), make(chan struct{})
	w := *b
	fn := b.Fn
	var once sync.Once
	w.Fn = func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
		v, err := fn(ctx, c)
		var s *sfrt.Suspend
		if errors.As(err, &s) {
			once.Do(func() {
				paused <- struct{}{}
				<-release
			})
		}
		return v, err
	}
	return &w, paused, release
}

// Issue 9 #1: a signal sent after wait_signal found its inbox empty but
// before the run's wait was committed must not be lost: the run must not
// end up waiting with the message in its inbox.
func TestSignalBeforeTheWaitIsCommittedIsNotLost(t *testing.T) {
	ws, paused, release := pausing(builtins.WaitSignal())
	e := newEnv(t, func(o *sfrt.Options) {
		for i, b := range o.Builtins {
			if b.Name == "wait_signal" {
				o.Builtins[i] = ws
			}
		}
	})
	done := make(chan *sfrt.Outcome, 1)
	go func() { done <- e.Start("sig", "def main(input):\n    return wait_signal('go')\n", `null`) }()
	<-paused
	d, err := e.RT.Send(bg, "sig", journal.Message{Kind: journal.MessageSignal, Name: "go", Value: json.RawMessage(`"ready"`)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Resume {
		t.Fatal("the run executes here; the caller must not be asked to resume it")
	}
	close(release)
	out := <-done
	if out.Status != journal.StatusCompleted {
		meta, _ := e.Store.Run(bg, "sig")
		t.Fatalf("status %s (inbox %d, waiting %+v): the signal was lost", out.Status, meta.Inbox, meta.Waiting)
	}
	runtest.MustResult(t, out, `"ready"`)
}

// The same for an answer to ask_human: it is accepted (the question is
// visible from the moment the builtin asks it) and not lost.
func TestAnswerBeforeTheWaitIsCommittedIsNotLost(t *testing.T) {
	ah, paused, release := pausing(builtins.AskHuman())
	e := newEnv(t, func(o *sfrt.Options) {
		for i, b := range o.Builtins {
			if b.Name == "ask_human" {
				o.Builtins[i] = ah
			}
		}
	})
	done := make(chan *sfrt.Outcome, 1)
	go func() {
		done <- e.Start("ask", "def main(input):\n    return ask_human('ok?', choices = ['yes', 'no'])\n", `null`)
	}()
	<-paused
	// Not yet visible as a wait: an answer now has no question to answer.
	if _, err := e.RT.Send(bg, "ask", journal.Message{Kind: journal.MessageAnswer, Value: json.RawMessage(`"yes"`)}); err == nil {
		t.Log("answer accepted before the question was visible")
	}
	close(release)
	out := <-done
	if out.Status == journal.StatusWaiting {
		meta, _ := e.Store.Run(bg, "ask")
		msgs, _ := e.Store.Inbox(bg, "ask", 1)
		if len(msgs) > 0 && meta.Waiting.Inbox < msgs[len(msgs)-1].Seq {
			t.Fatalf("waiting with an undelivered answer in its inbox: %+v", meta.Waiting)
		}
		// Answered now, it completes.
		d, err := e.RT.Send(bg, "ask", journal.Message{Kind: journal.MessageAnswer, Value: json.RawMessage(`"yes"`)})
		if err != nil || !d.Resume {
			t.Fatalf("answer: %+v %v", d, err)
		}
		out = e.Resume("ask")
	}
	runtest.MustResult(t, out, `"yes"`)
}

// slowRead wraps a store so that one Run() call, made by the goroutine
// that arms it, pauses after reading: the moment between Cancel reading a
// run's status and acting on it.
type slowRead struct {
	journal.Store
	mu      sync.Mutex
	armed   bool
	paused  chan struct{}
	release chan struct{}
}

func (s *slowRead) Run(ctx context.Context, id string) (*journal.Run, error) {
	m, err := s.Store.Run(ctx, id)
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if armed {
		s.paused <- struct{}{}
		<-s.release
	}
	return m, err
}

// Issue 9 #5: a run that completes while Cancel is deciding ends with
// exactly one run.finished, and its metadata agrees with its journal.
func TestCancelRacingCompletion(t *testing.T) {
	e := newEnv(t)
	slow := &slowRead{Store: e.Store, paused: make(chan struct{}), release: make(chan struct{})}
	rt, err := sfrt.New(slow, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Create(bg, sfrt.StartRequest{ID: "c", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte("def main(input):\n    return bump(1)['n']\n")}}); err != nil {
		t.Fatal(err)
	}
	slow.mu.Lock()
	slow.armed = true
	slow.mu.Unlock()
	cancelled := make(chan error, 1)
	go func() {
		_, err := rt.Cancel(bg, "c", "test")
		cancelled <- err
	}()
	<-slow.paused
	resumed := make(chan *sfrt.Outcome, 1)
	go func() {
		out, err := rt.Resume(bg, "c")
		if err != nil {
			t.Error(err)
		}
		resumed <- out
	}()
	// Let the run finish if it can, then let Cancel go on. Whatever the
	// order, the outcome must be consistent.
	select {
	case out := <-resumed:
		resumed <- out
	case <-time.After(200 * time.Millisecond):
	}
	close(slow.release)
	cerr := <-cancelled
	out := <-resumed
	finished := 0
	var last journal.RunFinished
	for _, r := range e.Records("c") {
		if r.Type == journal.TypeRunFinished {
			finished++
			r.Decode(&last)
		}
	}
	meta, _ := e.Store.Run(bg, "c")
	if finished != 1 || meta.Status != last.Status || out.Status != meta.Status {
		t.Fatalf("%d run.finished records; journal says %s, metadata %s, Resume returned %s (cancel: %v)", finished, last.Status, meta.Status, out.Status, cerr)
	}
	if meta.Status == journal.StatusCompleted && cerr == nil {
		t.Fatal("Cancel reported success on a run that completed")
	}
}

// The journal is the truth: a run whose metadata lags behind a journal
// that ends with run.finished (after a power loss the store may hold an
// older version of the metadata) is repaired, not executed again.
func TestStaleMetadataOfAFinishedRunIsRepaired(t *testing.T) {
	e := newEnv(t)
	runtest.MustResult(t, e.Start("f", "def main(input):\n    return bump(1)['n']\n", `null`), `1`)
	meta, err := e.Store.Run(bg, "f")
	if err != nil {
		t.Fatal(err)
	}
	stale := *meta
	stale.Status, stale.Result, stale.FinishedAt = journal.StatusRunning, nil, nil
	if err := e.Store.Append(bg, "f", nil, &stale, true); err != nil {
		t.Fatal(err)
	}
	rt, err := sfrt.New(e.Store, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := rt.Resume(bg, "f")
	if err != nil || out.Status != journal.StatusCompleted || string(out.Result) != "1" {
		t.Fatalf("%+v %v", out, err)
	}
	finished := 0
	for _, r := range e.Records("f") {
		if r.Type == journal.TypeRunFinished {
			finished++
		}
	}
	if m, _ := e.Store.Run(bg, "f"); finished != 1 || m.Status != journal.StatusCompleted || e.Count.Total() != 1 {
		t.Fatalf("%d run.finished, metadata %s, bump ran %d times", finished, m.Status, e.Count.Total())
	}
}
