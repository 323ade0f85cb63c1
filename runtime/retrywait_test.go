package runtime_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	sfrt "github.com/starflow/starflow/runtime"
)

// A backoff longer than MaxInlineWait suspends the run instead of holding
// a goroutine; the next attempt happens when the run resumes after it.
func TestLongBackoffSuspendsTheRun(t *testing.T) {
	flaky, calls := failingBuiltin("flaky", 1, func(n int) error {
		return &sfrt.Error{Kind: "rate_limit", Message: "slow down", Retryable: true, RetryAfter: 2 * time.Hour}
	})
	flaky.Retry = &sfrt.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, Jitter: -1}
	e := newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, flaky) })
	out := e.Start("long", "def main(input):\n    return flaky()\n", `null`)
	if out.Status != journal.StatusWaiting || out.Waiting == nil || !out.Waiting.Retry {
		t.Fatalf("status %s, waiting %+v; want waiting to retry", out.Status, out.Waiting)
	}
	if want := e.Clock.Now().Add(2 * time.Hour); !out.Waiting.Until.Equal(want) {
		t.Fatalf("wakes at %s, want %s", out.Waiting.Until, want)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d attempts before the wait", calls.Load())
	}
	// Too early: it waits on.
	e.Clock.Advance(time.Hour)
	if out = e.Resume("long"); out.Status != journal.StatusWaiting || calls.Load() != 1 {
		t.Fatalf("resumed early: %s after %d attempts", out.Status, calls.Load())
	}
	e.Clock.Advance(time.Hour)
	out = e.Resume("long")
	runtest.MustResult(t, out, `"ok after 2"`)
	cc := runtest.Completions(t, e.Store, "long")[0]
	if len(cc.Attempts) != 2 || cc.Attempts[0].Wait != 2*time.Hour || cc.Attempts[0].Kind != "rate_limit" {
		t.Fatalf("attempts %+v", cc.Attempts)
	}
}

// A builtin that decides its own retries returns Retry; the runtime does
// the waiting and hands the next attempt the state, also across a
// suspension.
func TestBuiltinRetryCarriesState(t *testing.T) {
	type st struct{ Seen []int }
	var got []string
	b := &sfrt.Builtin{Name: "poll", Fn: func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
		var s st
		ok, err := c.State(&s)
		if err != nil {
			return nil, err
		}
		got = append(got, fmt.Sprintf("attempt %d state %v %v started %s", c.Attempt, ok, s.Seen, c.Started.Format(time.TimeOnly)))
		if c.Attempt < 3 {
			wait := time.Millisecond
			if c.Attempt == 2 {
				wait = 3 * time.Hour
			}
			return nil, &sfrt.Retry{Err: &sfrt.Error{Kind: "not_ready", Message: "not ready"}, After: wait, State: st{Seen: append(s.Seen, c.Attempt)}}
		}
		return starlark.MakeInt(len(s.Seen)), nil
	}}
	e := newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, b) })
	start := e.Clock.Now()
	out := e.Start("poll", "def main(input):\n    return poll()\n", `null`)
	if out.Status != journal.StatusWaiting || !out.Waiting.Retry {
		t.Fatalf("status %s %+v", out.Status, out.Waiting)
	}
	e.Clock.Advance(3*time.Hour + time.Millisecond)
	runtest.MustResult(t, e.Resume("poll"), `2`)
	want := []string{
		"attempt 1 state false [] started " + start.Format(time.TimeOnly),
		"attempt 2 state true [1] started " + start.Format(time.TimeOnly),
		"attempt 3 state true [1 2] started " + start.Format(time.TimeOnly),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("attempts:\n%q\nwant\n%q", got, want)
	}
}
