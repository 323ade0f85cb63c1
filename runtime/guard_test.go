package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	sfrt "github.com/starflow/starflow/runtime"
)

func limitOf(t *testing.T, out *sfrt.Outcome) string {
	t.Helper()
	if out.Status != journal.StatusFailed || out.Error == nil || out.Error.Kind != "limit" {
		t.Fatalf("status %s, error %+v; want failed with kind limit", out.Status, out.Error)
	}
	return out.Error.Message
}

// Issue 10 #3: a script that keeps appending megabyte strings fails with
// a memory limit error (and its position) instead of taking the process
// down.
func TestMemoryLimitStopsARunThatHoardsData(t *testing.T) {
	e := newEnv(t, func(o *sfrt.Options) { o.MaxMemory = 32 << 20 })
	for name, src := range map[string]string{
		"list":    "def main(input):\n    hoard = []\n    for i in range(100000):\n        hoard.append('x' * (1 << 20) + str(i))\n    return len(hoard)\n",
		"string":  "def main(input):\n    s = ''\n    for i in range(100000):\n        s = s + 'y' * (1 << 20)\n    return len(s)\n",
		"closure": "def main(input):\n    kept = {}\n    def keep(i):\n        kept[i] = 'z' * (1 << 20) + str(i)\n    for i in range(100000):\n        keep(i)\n    return len(kept)\n",
	} {
		t.Run(name, func(t *testing.T) {
			out := e.Start("mem-"+name, src, `null`)
			msg := limitOf(t, out)
			if !strings.Contains(msg, "memory limit") || !strings.Contains(msg, "32.0 MiB") || !strings.HasPrefix(out.Error.Pos, "wf.star:") {
				t.Fatalf("error %q at %q", msg, out.Error.Pos)
			}
		})
	}
	// Sharing is counted once: a thousand references to one megabyte
	// string are one megabyte.
	out := e.Start("shared", "def main(input):\n    s = 'x' * (1 << 20)\n    l = [s] * 1000\n    d = {}\n    for i in range(20000):\n        d[i] = l\n    return len(d)\n", `null`)
	runtest.MustResult(t, out, `20000`)
}

// Issue 10 #3: one step can do a lot of work (a replace over a large
// string): the time a run computes between builtin calls is bounded.
func TestComputeLimitStopsLongComputation(t *testing.T) {
	e := newEnv(t, func(o *sfrt.Options) { o.MaxCompute = 50 * time.Millisecond; o.MaxSteps = 1 << 62 })
	out := e.Start("spin", "def main(input):\n    s = 'ab' * (1 << 20)\n    for i in range(1000000000):\n        s = s.replace('a', 'a')\n    return 1\n", `null`)
	msg := limitOf(t, out)
	if !strings.Contains(msg, "computed for more than 50ms") || !strings.HasPrefix(out.Error.Pos, "wf.star:") {
		t.Fatalf("error %q at %q", msg, out.Error.Pos)
	}
	// Time spent inside builtin calls is not computation.
	slow := sfrt.Func("slow", func(ctx context.Context, c *sfrt.Call) (any, error) {
		time.Sleep(60 * time.Millisecond)
		return "ok", nil
	})
	e2 := newEnv(t, func(o *sfrt.Options) { o.MaxCompute = 50 * time.Millisecond; o.Builtins = append(o.Builtins, slow) })
	runtest.MustResult(t, e2.Start("calls", "def main(input):\n    return [slow(), slow()]\n", `null`), `["ok", "ok"]`)
}

// Issue 10 #3: a run that was executing each time the process died is
// quarantined after MaxCrashes such deaths in a row, and retried on
// request; every other run goes on.
func TestCrashLoopQuarantinesTheRun(t *testing.T) {
	entered := make(chan struct{}, 16)
	hang := true
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	poison := sfrt.Func("poison", func(ctx context.Context, c *sfrt.Call) (any, error) {
		if hang {
			entered <- struct{}{}
			<-block // the process "dies" here: nothing more happens
			return nil, errors.New("gone")
		}
		return "survived", nil
	})
	e := newEnv(t, func(o *sfrt.Options) { o.MaxCrashes = 3; o.Builtins = append(o.Builtins, poison) })
	src := "def main(input):\n    bump(1)\n    return poison()\n"
	if _, err := e.RT.Create(bg, sfrt.StartRequest{ID: "p", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}}); err != nil {
		t.Fatal(err)
	}
	// Each execution dies inside poison(); each restart is a new runtime
	// over the same store, as a new process would be.
	for i := 0; i < 3; i++ {
		rt, err := sfrt.New(e.Store, e.Opts)
		if err != nil {
			t.Fatal(err)
		}
		go rt.Resume(bg, "p")
		<-entered
	}
	rt, err := sfrt.New(e.Store, e.Opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := rt.Resume(bg, "p")
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != journal.StatusQuarantined || out.Error == nil || !strings.Contains(out.Error.Message, "died 3 times in a row") || !strings.Contains(out.Error.Message, "starflow retry p") {
		t.Fatalf("status %s, error %+v", out.Status, out.Error)
	}
	// Quarantined: resuming again executes nothing.
	if again, err := rt.Resume(bg, "p"); err != nil || again.Status != journal.StatusQuarantined {
		t.Fatalf("resume of a quarantined run: %+v %v", again, err)
	}
	// Other runs go on.
	runtest.MustResult(t, e.Start("other", "def main(input):\n    return bump(2)['n']\n", `null`), `2`)
	// Retried (the cause fixed), it continues from its journal.
	hang = false
	if _, err := rt.Retry(bg, "p", "ops"); err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, mustResume(t, rt, "p"), `"survived"`)
	if e.Count.Runs("p/1") != 1 {
		t.Fatalf("bump ran %d times", e.Count.Runs("p/1"))
	}
	types := map[journal.Type]int{}
	for _, r := range e.Records("p") {
		types[r.Type]++
	}
	if types[journal.TypeRunQuarantined] != 1 || types[journal.TypeRunRetried] != 1 || types[journal.TypeRunFinished] != 1 {
		t.Fatalf("journal record types %v", types)
	}
	// Retrying a run that is not quarantined is refused.
	if _, err := rt.Retry(bg, "other", "ops"); !errors.Is(err, sfrt.ErrInvalid) {
		t.Fatalf("retry of a completed run: %v", err)
	}
}

// Progress resets the count: a run that completes a new call between
// crashes is not crash-looping.
func TestCrashesWithProgressDoNotQuarantine(t *testing.T) {
	entered := make(chan struct{}, 16)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	var n int
	step := sfrt.Func("step", func(ctx context.Context, c *sfrt.Call) (any, error) {
		n++
		if n%2 == 0 { // every other attempt dies, after the one before completed
			entered <- struct{}{}
			<-block
		}
		return n, nil
	})
	e := newEnv(t, func(o *sfrt.Options) { o.MaxCrashes = 2; o.Builtins = append(o.Builtins, step) })
	src := "def main(input):\n    return [step() for i in range(6)]\n"
	if _, err := e.RT.Create(bg, sfrt.StartRequest{ID: "q", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}}); err != nil {
		t.Fatal(err)
	}
	for {
		rt, err := sfrt.New(e.Store, e.Opts)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan *sfrt.Outcome, 1)
		go func() {
			out, _ := rt.Resume(bg, "q")
			done <- out
		}()
		select {
		case <-entered:
			continue // died mid-call; restart
		case out := <-done:
			if out.Status != journal.StatusCompleted {
				t.Fatalf("status %s %+v", out.Status, out.Error)
			}
			return
		}
	}
}

func mustResume(t *testing.T, rt *sfrt.Runtime, id string) *sfrt.Outcome {
	t.Helper()
	out, err := rt.Resume(bg, id)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var _ = starlark.None
