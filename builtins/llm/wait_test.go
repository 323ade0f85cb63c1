package llm_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// The tests here are about who waits: the runtime does, on its own clock.
// None of them waits for real; a call that waited inside the builtin
// would be cut off by guard (and the test fail) instead of hanging.

const guard = 20 * time.Second

func guarded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

// start starts a run under guard; an error (the guard cut the run off)
// fails the test.
func (h *harness) start(ctx context.Context, id, src string) *runtime.Outcome {
	h.t.Helper()
	out, err := h.rt.Start(ctx, runtime.StartRequest{ID: id, Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}})
	if err != nil {
		h.t.Fatalf("Start %s: %v (did the call wait inside the builtin?)", id, err)
	}
	return out
}

func onlyDeployment(t testing.TB, flavor llmtest.Flavor, url, extra string) *llm.Config {
	return parse(t, `
providers:
  p: {type: %s, base_url: %s, api_key: env(OPENAI_API_KEY)}
models:
  default:
    retry: {initial: 10ms, jitter: 0}
    %s
    deployments:
      - {name: only, provider: p, model: m}
`, flavor, url, extra)
}

// A rate-limit wait longer than MaxInlineWait suspends the run (status
// waiting, a durable timer) instead of holding a goroutine; the next
// round happens when the run is resumed after it, and the journal shows
// every attempt and the wait.
func TestLongRateLimitWaitSuspendsTheRun(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "p", "")
	srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 2 * time.Hour})
	clock := runtest.NewClock()
	h := newHarness(t, onlyDeployment(t, llmtest.OpenAI, srv.URL(), "deadline: 3h"),
		func(o *runtime.Options) { o.Clock = clock.Now })
	ctx := guarded(t)
	t0 := clock.Now()
	out := h.start(ctx, "long", "def main(input):\n    return llm(\"hello\").text\n")
	if out.Status != journal.StatusWaiting || out.Waiting == nil || !out.Waiting.Retry || out.Waiting.Builtin != "llm" {
		t.Fatalf("status %s, waiting %+v: want the run suspended until the rate limit ends", out.Status, out.Waiting)
	}
	if want := t0.Add(2 * time.Hour); out.Waiting.Until == nil || !out.Waiting.Until.Equal(want) {
		t.Fatalf("wakes at %v, want %s (the provider's retry-after)", out.Waiting.Until, want)
	}
	if srv.Calls() != 1 {
		t.Fatalf("%d requests before the wait", srv.Calls())
	}
	// Too early: still waiting, nothing sent.
	clock.Advance(time.Hour)
	if out, err := h.rt.Resume(ctx, "long"); err != nil || out.Status != journal.StatusWaiting || srv.Calls() != 1 {
		t.Fatalf("resumed early: %v %v, %d requests", out.Status, err, srv.Calls())
	}
	clock.Advance(time.Hour)
	out, err := h.rt.Resume(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, out, `"p: hello"`)
	if srv.Calls() != 2 {
		t.Fatalf("%d requests, want 2", srv.Calls())
	}
	cc := runtest.Completions(t, h.store, "long")[0]
	if len(cc.Attempts) != 2 || cc.Attempts[0].Wait != 2*time.Hour || cc.Attempts[0].Kind != "rate_limit" || !strings.Contains(cc.Attempts[0].Error, "HTTP 429") {
		t.Fatalf("journaled attempts %+v: want a failed round, its 2h wait, then the answer", cc.Attempts)
	}
	// The detail survived the suspension: both provider requests and the wait.
	d := h.details("long")[0]
	at := attemptsOf(d)
	if len(at) != 2 || at[0]["class"] != "rate_limit" || num(at[0]["retry_after_ms"]) != 7_200_000 || num(at[1]["round"]) != 2 || at[1]["class"] != nil {
		t.Fatalf("detail attempts %v", at)
	}
	waits, _ := d["waits"].([]any)
	if len(waits) != 1 || num(waits[0].(map[string]any)["wait_ms"]) != 7_200_000 || !strings.Contains(fmt.Sprint(waits), "cooldown") {
		t.Fatalf("detail waits %v", waits)
	}
	if d["outcome"] != "answered" {
		t.Fatalf("detail %v", d)
	}
}

// Under SkipWaits (starflow test) the runtime ends a wait by moving its
// clock. The call's cooldowns are on that clock too: after the skipped
// wait the rate-limited deployment is available again, even though the
// module itself was given the real clock.
func TestSkippedWaitIsSeenByTheCooldowns(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "p", "")
	srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 30 * time.Second})
	clock := runtest.NewClock()
	h := newHarness(t, onlyDeployment(t, llmtest.OpenAI, srv.URL(), ""),
		func(o *llm.Options) { o.Now = time.Now },
		func(o *runtime.Options) { o.Clock, o.SkipWaits = clock.Now, true })
	t0 := h.rt.Now()
	out := h.start(guarded(t), "skip", "def main(input):\n    return llm(\"hello\").text\n")
	runtest.MustResult(t, out, `"p: hello"`)
	if srv.Calls() != 2 {
		t.Fatalf("%d requests, want 2 (one 429, one answer)", srv.Calls())
	}
	if moved := h.rt.Now().Sub(t0); moved < 30*time.Second {
		t.Fatalf("the runtime's clock moved %s, want the 30s wait skipped on it", moved)
	}
	cc := runtest.Completions(t, h.store, "skip")[0]
	if len(cc.Attempts) != 2 || cc.Attempts[0].Wait != 30*time.Second {
		t.Fatalf("journaled attempts %+v", cc.Attempts)
	}
}

// Drain ends an in-process wait between rounds at once; the run stays
// resumable.
func TestDrainEndsAWaitBetweenRounds(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "p", "")
	srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 30 * time.Second})
	var h *harness
	h = newHarness(t, onlyDeployment(t, llmtest.OpenAI, srv.URL(), ""), func(o *runtime.Options) {
		o.OnCall = func(ev runtime.CallEvent) {
			if ev.Outcome == "retry" {
				h.rt.Drain() // the runtime is about to wait 30s in process
			}
		}
	})
	out, err := h.rt.Start(guarded(t), runtime.StartRequest{ID: "drain", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte("def main(input):\n    return llm(\"hello\").text\n")}})
	if !errors.Is(err, runtime.ErrInterrupted) || out == nil || out.Status != journal.StatusRunning {
		t.Fatalf("Start: %+v, %v; want the run interrupted by Drain, resumable", out, err)
	}
	if srv.Calls() != 1 {
		t.Fatalf("%d requests", srv.Calls())
	}
}

// However many rounds a call makes, its detail (and the state it carries
// from round to round) stays bounded: the first attempts and the latest
// are kept, and the rest counted.
func TestLongCallsKeepABoundedTrace(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "p", "")
	srv.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Unavailable} })
	h := newHarness(t, parse(t, `
providers:
  p: {type: openai, base_url: %s}
health: {min_requests: 100000}
models:
  default:
    retry: {max_attempts: 20, initial: 1ms, max_interval: 1ms, jitter: 0}
    deployments:
      - {provider: p, model: m1}
      - {provider: p, model: m2}
      - {provider: p, model: m3}
      - {provider: p, model: m4}
      - {provider: p, model: m5}
      - {provider: p, model: m6}
`, srv.URL()))
	kind, _ := h.fails(`llm("hello")`)
	if kind != "unavailable" || srv.Calls() != 120 {
		t.Fatalf("kind %q after %d requests, want unavailable after 20 rounds of 6", kind, srv.Calls())
	}
	d := h.details("run-1")[0]
	at := attemptsOf(d)
	if len(at) != 100 || num(d["attempts_omitted"]) != 20 {
		t.Fatalf("%d attempts kept, %v omitted; want 100 and 20", len(at), d["attempts_omitted"])
	}
	if num(at[0]["n"]) != 1 || num(at[9]["n"]) != 10 || num(at[10]["n"]) != 31 || num(at[99]["n"]) != 120 || num(at[99]["round"]) != 20 {
		t.Fatalf("kept attempts %v %v %v %v: want the first 10 and the latest 90", at[0]["n"], at[9]["n"], at[10]["n"], at[99]["n"])
	}
	if waits, _ := d["waits"].([]any); len(waits) != 19 {
		t.Fatalf("%d waits", len(waits))
	}
	cc := runtest.Completions(t, h.store, "run-1")[0]
	if len(cc.Attempts) != 20 || len(cc.Attempts[0].Error) > 1000 {
		t.Fatalf("%d journaled rounds; the first's error is %d bytes", len(cc.Attempts), len(cc.Attempts[0].Error))
	}
}
