package llm_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// suspendAlways makes every wait suspend the run, so a test reads the
// wait a call asked for in the run's wake-up time, without waiting.
func suspendAlways(clock *runtest.Clock) func(*runtime.Options) {
	return func(o *runtime.Options) { o.Clock, o.MaxInlineWait = clock.Now, -1 }
}

// Issue 9 #12: a 429 with retry-after: 1 and "0 requests remaining" but
// no reset header made the call wait a minute (an assumed window). The
// server's Retry-After wins.
func TestRetryAfterWinsOverAnUnknownReset(t *testing.T) {
	for _, tc := range []struct {
		flavor llmtest.Flavor
		header string
	}{
		{llmtest.OpenAI, "x-ratelimit-remaining-requests"},
		{llmtest.Anthropic, "anthropic-ratelimit-requests-remaining"},
	} {
		t.Run(string(tc.flavor), func(t *testing.T) {
			srv := llmtest.New(t, tc.flavor, "p", "")
			h := http.Header{}
			h.Set(tc.header, "0")
			srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: time.Second, Header: h})
			clock := runtest.NewClock()
			hr := newHarness(t, onlyDeployment(t, tc.flavor, srv.URL(), ""), suspendAlways(clock))
			t0 := clock.Now()
			out := hr.start(guarded(t), "r", "def main(input):\n    return llm(\"hello\").text\n")
			if out.Status != journal.StatusWaiting || out.Waiting.Until == nil {
				t.Fatalf("status %s %+v: want the run waiting for the next round", out.Status, out.Waiting)
			}
			if wait := out.Waiting.Until.Sub(t0); wait != time.Second {
				t.Fatalf("the call asked to wait %s; the server said retry-after: 1", wait)
			}
			clock.Advance(time.Second)
			out, err := hr.rt.Resume(guarded(t), "r")
			if err != nil {
				t.Fatal(err)
			}
			runtest.MustResult(t, out, `"p: hello"`)
		})
	}
}

// Without a reset time or a Retry-After, a spent request budget refills
// after rate_limit_cooldown, not after an invented minute.
func TestUnknownResetFallsBackToTheRateLimitCooldown(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "p", "")
	h := http.Header{}
	h.Set("x-ratelimit-remaining-requests", "0")
	srv.Script(llmtest.Reply{Header: h})
	clock := runtest.NewClock()
	hr := newHarness(t, parse(t, `
providers:
  p: {type: openai, base_url: %s}
health: {rate_limit_cooldown: 3s}
models:
  default:
    retry: {initial: 10ms, jitter: 0}
    deployments:
      - {provider: p, model: m}
`, srv.URL()), suspendAlways(clock))
	t0 := clock.Now()
	runtest.MustResult(t, hr.start(guarded(t), "a", "def main(input):\n    return llm(\"one\").text\n"), `"p: one"`)
	out := hr.start(guarded(t), "b", "def main(input):\n    return llm(\"two\").text\n")
	if out.Status != journal.StatusWaiting || out.Waiting.Until == nil {
		t.Fatalf("status %s %+v: want the second call waiting for the budget", out.Status, out.Waiting)
	}
	if wait := out.Waiting.Until.Sub(t0); wait != 3*time.Second {
		t.Fatalf("the call asked to wait %s, want rate_limit_cooldown (3s)", wait)
	}
	if srv.Calls() != 1 {
		t.Fatalf("%d requests", srv.Calls())
	}
}

// A reservation for a request that is never sent (its key is missing) is
// given back: the deployment's rpm budget is not spent by it.
func TestUnsentRequestDoesNotSpendTheRPMBudget(t *testing.T) {
	a := llmtest.New(t, llmtest.OpenAI, "a", "")
	b := llmtest.New(t, llmtest.Compatible, "b", "")
	var keyThere atomic.Bool
	h := newHarness(t, parse(t, `
providers:
  a: {type: openai, base_url: %s, api_key: env(FLAKY_KEY)}
  b: {type: openai_compatible, base_url: %s}
models:
  default:
    deployments:
      - {name: a, provider: a, model: m, tier: 1, rpm: 1}
      - {name: b, provider: b, model: m, tier: 2}
`, a.URL(), b.URL()), func(o *llm.Options) {
		o.Secrets = func(name string) (string, error) {
			if name == "FLAKY_KEY" && keyThere.Load() {
				return "sk-test-flaky-key-0123456789", nil
			}
			return secrets(name)
		}
	})
	if res := h.one(`llm("x")`); res["deployment"] != "b" {
		t.Fatalf("without its key a is skipped: %v", res)
	}
	keyThere.Store(true)
	if res := h.one(`llm("y")`); res["deployment"] != "a" {
		t.Fatalf("a's one request this minute was never sent, so a answers now: %v (skipped: %v)", res, h.details("run-2")[0]["skipped"])
	}
	if res := h.one(`llm("z")`); res["deployment"] != "b" || !strings.Contains(fmt.Sprint(h.details("run-3")[0]["skipped"]), "rpm limit 1") {
		t.Fatalf("a's budget is spent now: %v", res)
	}
}
