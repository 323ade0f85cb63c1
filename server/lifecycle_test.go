package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

// pauseWaits makes wait_signal stop, the first time it asks to wait,
// until released: the moment between finding its inbox empty and the run
// committing its wait.
func pauseWaits(o *runtime.Options) (paused, release chan struct{}) {
	paused, release = make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	for i, b := range o.Builtins {
		if b.Name != "wait_signal" {
			continue
		}
		w := *b
		fn := b.Fn
		w.Fn = func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			v, err := fn(ctx, c)
			var s *runtime.Suspend
			if errors.As(err, &s) {
				once.Do(func() { paused <- struct{}{}; <-release })
			}
			return v, err
		}
		o.Builtins[i] = &w
	}
	return paused, release
}

// Issue 9 #1 through the server: a signal that arrives while the run is
// about to suspend wakes it; the run never waits forever with the message
// in its inbox.
func TestSignalRacingSuspensionThroughTheAPI(t *testing.T) {
	var paused, release chan struct{}
	f := start(t, server.Options{}, func(o *runtime.Options) { paused, release = pauseWaits(o) })
	if _, err := f.client.Start(bg, server.StartRequest{ID: "race", Source: "def main(input):\n    return wait_signal('go')\n"}); err != nil {
		t.Fatal(err)
	}
	<-paused
	if _, err := f.client.Signal(bg, "race", "go", json.RawMessage(`"now"`), ""); err != nil {
		t.Fatal(err)
	}
	close(release)
	r := f.waitStatus("race", journal.StatusCompleted)
	if !runtest.SameJSON(r.Result, []byte(`"now"`)) {
		t.Fatalf("result %s", r.Result)
	}
}

// Issue 9 #1, after a crash: a message delivered to a waiting run by a
// process that died before resuming it is found at the next start.
func TestRecoveryResumesRunsWithADeliverableMessage(t *testing.T) {
	e := runtest.New(t, func(o *runtime.Options) { o.Clock = time.Now })
	out := e.Start("answered", "def main(input):\n    return wait_signal('go')\n", `null`)
	if out.Status != journal.StatusWaiting {
		t.Fatal(out.Status)
	}
	other := e.Start("unrelated", "def main(input):\n    return wait_signal('go')\n", `null`)
	if other.Status != journal.StatusWaiting {
		t.Fatal(other.Status)
	}
	// Delivered, and then the process "died": nobody resumed the run.
	if _, err := e.RT.Send(bg, "answered", journal.Message{Kind: journal.MessageSignal, Name: "go", Value: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.RT.Send(bg, "unrelated", journal.Message{Kind: journal.MessageSignal, Name: "stop", Value: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	rt2, err := runtime.New(e.Store, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	e.RT = rt2
	f := serveOn(t, e, server.Options{})
	r := f.waitStatus("answered", journal.StatusCompleted)
	if !runtest.SameJSON(r.Result, []byte(`1`)) {
		t.Fatalf("result %s", r.Result)
	}
	if r, _ := f.client.Get(bg, "unrelated"); r.Status != journal.StatusWaiting {
		t.Fatalf("a signal the run does not wait for woke it: %s", r.Status)
	}
}

// Issue 9 #13: long polls that time out, and polls for runs that do not
// exist, leave no watcher behind.
func TestWaitPollsLeaveNoWatchers(t *testing.T) {
	f := start(t, server.Options{})
	if _, err := f.client.Start(bg, server.StartRequest{ID: "w", Source: "def main(input):\n    return wait_signal('go')\n", Wait: "5s"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := f.client.WaitWhile(bg, "w", journal.StatusWaiting, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		var ae *server.APIError
		if _, err := f.client.Wait(bg, "nobody", time.Millisecond); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			t.Fatalf("wait for an unknown run: %v", err)
		}
	}
	resp, err := http.Get("http://" + f.srv.Addr() + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Watchers int }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Watchers != 0 {
		t.Fatalf("%d watchers left after the polls returned", h.Watchers)
	}
}

// damagedList is a store in which one run is damaged: List returns the
// others with an error naming it.
type damagedList struct {
	journal.Store
	bad string
}

func (d *damagedList) List(ctx context.Context, f journal.Filter) ([]*journal.Run, error) {
	runs, err := d.Store.List(ctx, f)
	if err != nil {
		return runs, err
	}
	var out []*journal.Run
	for _, r := range runs {
		if r.ID != d.bad {
			out = append(out, r)
		}
	}
	return out, &journal.CorruptRunsError{Runs: []*journal.CorruptError{{RunID: d.bad, Reason: "metadata: checksum mismatch"}}}
}

// A damaged run does not keep the server from starting and recovering the
// others, and the API lists the others and names it.
func TestRecoveryLeavesADamagedRunAlone(t *testing.T) {
	e := runtest.New(t, func(o *runtime.Options) { o.Clock = time.Now })
	for _, id := range []string{"good", "bad"} {
		if _, err := e.RT.Create(bg, runtime.StartRequest{ID: id, Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte("def main(input):\n    return 1\n")}}); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := runtime.New(&damagedList{Store: e.Store, bad: "bad"}, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	e.RT = rt
	f := serveOn(t, e, server.Options{})
	f.waitStatus("good", journal.StatusCompleted)
	runs, err := f.client.List(bg, nil, 0)
	var bad *journal.CorruptRunsError
	if !errors.As(err, &bad) || len(bad.Runs) != 1 || bad.Runs[0].RunID != "bad" || len(runs) != 1 || runs[0].ID != "good" {
		t.Fatalf("list: %v, %v", runs, err)
	}
}
