package llm_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/runtime"
)

// fastRetry keeps tests that are not about waiting quick.
const fastRetry = "retry: {initial: 10ms, jitter: 0}"

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func attemptsOf(d map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := d["attempts"].([]any)
	for _, a := range list {
		m, _ := a.(map[string]any)
		out = append(out, m)
	}
	return out
}

func TestPrimary500SecondaryAnswers(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", openAIKey)
	an := llmtest.New(t, llmtest.Anthropic, "anthropic", anthropicKey)
	oa.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.ServerError} })
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
  anthropic: {type: anthropic, base_url: %s}
models:
  default:
    %s
    deployments:
      - {name: primary, provider: openai, model: gpt-4o, tier: 1}
      - {name: secondary, provider: anthropic, model: claude-sonnet, tier: 2}
`, oa.URL(), an.URL(), fastRetry))
	res := h.one(`llm("Summarise the incident report.")`)
	if res["tier"] != 2.0 || res["provider"] != "anthropic" || res["deployment"] != "secondary" || res["attempts"] != 2.0 || res["degraded"] != false {
		t.Fatalf("result %v: want tier 2 from the secondary after one failed attempt", res)
	}
	if !strings.HasPrefix(res["text"].(string), "anthropic: Summarise") {
		t.Fatalf("text %q", res["text"])
	}
	if oa.Calls() != 1 || an.Calls() != 1 {
		t.Fatalf("calls: primary %d, secondary %d; want 1 and 1", oa.Calls(), an.Calls())
	}
	d := h.details("run-1")[0]
	at := attemptsOf(d)
	if len(at) != 2 || at[0]["class"] != "server" || num(at[0]["status"]) != 500 || at[0]["deployment"] != "primary" || at[1]["class"] != nil {
		t.Fatalf("journal detail attempts %v", at)
	}
	if d["waits"] != nil {
		t.Fatalf("failover after a 500 must be immediate, detail shows waits %v", d["waits"])
	}
}

// The wait a 429 asks for is the wait before the next round: the runtime
// waits it on its clock (here skipped, moving the clock by exactly that
// much), then the same deployment answers.
func TestRateLimitRetryAfterIsHonoured(t *testing.T) {
	for _, tc := range []struct {
		flavor llmtest.Flavor
		wait   time.Duration // what the server asks for
	}{
		{llmtest.OpenAI, 400 * time.Millisecond}, // retry-after-ms: 400 (and retry-after: 1)
		{llmtest.Anthropic, time.Second},         // retry-after: 1 (whole seconds only)
		{llmtest.Gemini, 600 * time.Millisecond}, // RESOURCE_EXHAUSTED with RetryInfo.retryDelay 0.6s
	} {
		t.Run(string(tc.flavor), func(t *testing.T) {
			srv := llmtest.New(t, tc.flavor, "p", "")
			srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: tc.wait})
			clock := runtest.NewClock()
			h := newHarness(t, parse(t, `
providers:
  p: {type: %s, base_url: %s, api_key: env(OPENAI_API_KEY)}
models:
  default:
    retry: {initial: 10ms}
    deployments:
      - {provider: p, model: m}
`, tc.flavor, srv.URL()), func(o *runtime.Options) { o.Clock = clock.Now })
			t0 := h.rt.Now()
			res := h.one(`llm("hello")`)
			if res["attempts"] != 2.0 || res["tier"] != 1.0 || srv.Calls() != 2 {
				t.Fatalf("result %v, %d requests: want the second attempt to answer", res, srv.Calls())
			}
			if moved := h.rt.Now().Sub(t0); moved != tc.wait {
				t.Fatalf("the runtime waited %s before the second request; the server asked for %s", moved, tc.wait)
			}
			cc := runtest.Completions(t, h.store, "run-1")[0]
			if len(cc.Attempts) != 2 || cc.Attempts[0].Wait != tc.wait || cc.Attempts[0].Kind != "rate_limit" {
				t.Fatalf("journaled attempts %+v", cc.Attempts)
			}
			d := h.details("run-1")[0]
			waits, _ := d["waits"].([]any)
			if len(waits) != 1 || int64(num(waits[0].(map[string]any)["wait_ms"])) != tc.wait.Milliseconds() {
				t.Fatalf("journal detail waits %v", waits)
			}
			at := attemptsOf(d)
			if int64(num(at[0]["retry_after_ms"])) != tc.wait.Milliseconds() || at[0]["class"] != "rate_limit" {
				t.Fatalf("first attempt %v", at[0])
			}
			if tc.flavor == llmtest.Gemini && !strings.Contains(at[0]["error"].(string), "RESOURCE_EXHAUSTED") {
				t.Fatalf("first attempt %v", at[0])
			}
		})
	}
}

func TestAnthropic529FailsOverAtOnce(t *testing.T) {
	east := llmtest.New(t, llmtest.Anthropic, "east", anthropicKey)
	west := llmtest.New(t, llmtest.Anthropic, "west", anthropicKey)
	east.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Overloaded} })
	h := newHarness(t, parse(t, `
providers:
  anthropic-east: {type: anthropic, base_url: %s}
  anthropic-west: {type: anthropic, base_url: %s}
models:
  default:
    strategy: priority
    deployments:
      - {name: east, provider: anthropic-east, model: claude-sonnet, region: us-east}
      - {name: west, provider: anthropic-west, model: claude-sonnet, region: us-west}
`, east.URL(), west.URL()))
	res := h.one(`llm("hello")`)
	if res["deployment"] != "west" || res["tier"] != 1.0 || res["attempts"] != 2.0 {
		t.Fatalf("result %v, want west after east's 529", res)
	}
	d := h.details("run-1")[0]
	at := attemptsOf(d)
	if num(at[0]["status"]) != 529 || !strings.Contains(at[0]["error"].(string), "overloaded_error") {
		t.Fatalf("first attempt %v, want 529 overloaded_error", at[0])
	}
	if d["waits"] != nil {
		t.Fatalf("529 must fail over at once, got waits %v", d["waits"])
	}
}

func TestUnauthorizedFailsFastWithOneAttempt(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", "")
	an := llmtest.New(t, llmtest.Anthropic, "anthropic", "")
	oa.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Unauthorized} })
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
  anthropic: {type: anthropic, base_url: %s}
models:
  default:
    deployments:
      - {name: primary, provider: openai, model: gpt-4o, tier: 1}
      - {name: secondary, provider: anthropic, model: claude, tier: 2}
`, oa.URL(), an.URL()))
	kind, msg := h.fails(`llm("hello")`)
	if kind != "auth" {
		t.Fatalf("kind %q (%s), want auth", kind, msg)
	}
	if oa.Calls() != 1 || an.Calls() != 0 {
		t.Fatalf("calls: openai %d, anthropic %d; want exactly one attempt", oa.Calls(), an.Calls())
	}
	if !contains(msg, "primary", "rejected the request", "env(OPENAI_API_KEY)", "not retried") {
		t.Fatalf("message does not say what failed and what to check: %s", msg)
	}
	if strings.Contains(msg, openAIKey) || strings.Contains(h.logs.String(), openAIKey) {
		t.Fatalf("the key the provider echoed leaked: %s", msg)
	}
	if !strings.Contains(h.logs.String(), `"alert":true`) {
		t.Fatalf("a rejected key must be logged as alert-worthy; logs:\n%s", h.logs.String())
	}
}

func TestQuotaIsNotRetriedOnThatDeployment(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", "")
	oa.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Quota} })
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    retry: {max_attempts: 3, initial: 10ms}
    deployments:
      - {provider: openai, model: gpt-4o}
`, oa.URL()))
	kind, msg := h.fails(`llm("hello")`)
	if kind != "quota" || !strings.Contains(msg, "insufficient_quota") {
		t.Fatalf("kind %q: %s", kind, msg)
	}
	if oa.Calls() != 1 {
		t.Fatalf("quota exhaustion was retried: %d calls", oa.Calls())
	}
}

func TestCircuitBreakerOpensSkipsHalfOpensAndCloses(t *testing.T) {
	a := llmtest.New(t, llmtest.OpenAI, "a", "")
	b := llmtest.New(t, llmtest.Compatible, "b", "")
	var aFails atomic.Bool
	aFails.Store(true)
	a.Handle(func(*llmtest.Request) llmtest.Reply {
		if aFails.Load() {
			return llmtest.Reply{Fault: llmtest.ServerError}
		}
		return llmtest.Reply{}
	})
	h := newHarness(t, parse(t, `
providers:
  a: {type: openai, base_url: %s}
  b: {type: openai_compatible, base_url: %s}
health: {failure_rate: 0.5, min_requests: 3, window: 10s, cooldown: 300ms}
models:
  default:
    strategy: priority
    deployments:
      - {name: a, provider: a, model: m}
      - {name: b, provider: b, model: m}
`, a.URL(), b.URL()))
	state := func(name string) string {
		for _, d := range h.mod.Health() {
			if d.Name == name {
				return d.Breaker
			}
		}
		t.Fatalf("no deployment %s in Health()", name)
		return ""
	}
	for i := 0; i < 3; i++ {
		if res := h.one(`llm("x")`); res["deployment"] != "b" {
			t.Fatalf("call %d: %v", i+1, res)
		}
	}
	if a.Calls() != 3 || state("a") != "open" {
		t.Fatalf("after 3 failures of 3: a called %d times, breaker %s; want 3 and open", a.Calls(), state("a"))
	}
	h.one(`llm("x")`)
	if a.Calls() != 3 {
		t.Fatalf("an open breaker still let a call through (a called %d times)", a.Calls())
	}
	skipped, _ := h.details("run-4")[0]["skipped"].([]any)
	if len(skipped) == 0 || !strings.Contains(fmt.Sprint(skipped), "circuit open") {
		t.Fatalf("journal detail should say a was skipped for its open circuit: %v", skipped)
	}
	time.Sleep(350 * time.Millisecond)
	if state("a") != "half-open" {
		t.Fatalf("after the cooldown the breaker is %s, want half-open", state("a"))
	}
	aFails.Store(false)
	if res := h.one(`llm("x")`); res["deployment"] != "a" {
		t.Fatalf("the half-open probe should go to a: %v", res)
	}
	if state("a") != "closed" {
		t.Fatalf("after a successful probe the breaker is %s, want closed", state("a"))
	}
}

func TestWeighted9010Over1000Calls(t *testing.T) {
	stable := llmtest.New(t, llmtest.Compatible, "stable", "")
	canary := llmtest.New(t, llmtest.Compatible, "canary", "")
	h := newHarness(t, parse(t, `
providers:
  stable: {type: openai_compatible, base_url: %s}
  canary: {type: openai_compatible, base_url: %s}
models:
  default:
    strategy: weighted
    deployments:
      - {name: stable, provider: stable, model: m, weight: 90}
      - {name: canary, provider: canary, model: m-next, weight: 10}
`, stable.URL(), canary.URL()))
	var canaryAt []int
	for i := 0; i < 1000; i++ {
		res, err := h.mod.Complete(bg, llm.Request{Prompt: fmt.Sprintf("call %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Deployment == "canary" {
			canaryAt = append(canaryAt, i)
		}
	}
	// Smooth weighted round-robin is exact; the stated tolerance is ±2%.
	if n := len(canaryAt); n < 80 || n > 120 || stable.Calls()+canary.Calls() != 1000 {
		t.Fatalf("canary got %d of 1000 calls (servers: stable %d, canary %d); want 100 ± 20", n, stable.Calls(), canary.Calls())
	}
	for i := 1; i < len(canaryAt); i++ {
		if gap := canaryAt[i] - canaryAt[i-1]; gap > 12 {
			t.Fatalf("canary calls bunch up: a gap of %d calls", gap)
		}
	}
}

// The latency strategy prefers the deployment that answers faster and
// moves away from it when it slows down. Latencies are measured on a
// clock the servers advance (Options.LatencyClock), so the outcome does
// not depend on how busy the machine is: the shares below are exact
// consequences of the strategy, not of timing.
func TestLatencyRoutingPrefersTheFasterAndAdapts(t *testing.T) {
	a := llmtest.New(t, llmtest.Compatible, "a", "")
	b := llmtest.New(t, llmtest.Compatible, "b", "")
	clock := runtest.NewClock()
	var aDelay atomic.Int64
	aDelay.Store(int64(2 * time.Millisecond))
	a.Handle(func(*llmtest.Request) llmtest.Reply {
		clock.Advance(time.Duration(aDelay.Load()))
		return llmtest.Reply{}
	})
	b.Handle(func(*llmtest.Request) llmtest.Reply { clock.Advance(25 * time.Millisecond); return llmtest.Reply{} })
	h := newHarness(t, parse(t, `
providers:
  a: {type: openai_compatible, base_url: %s}
  b: {type: openai_compatible, base_url: %s}
models:
  default:
    strategy: latency
    deployments:
      - {name: a, provider: a, model: m}
      - {name: b, provider: b, model: m}
`, a.URL(), b.URL()), func(o *llm.Options) { o.Now, o.LatencyClock = clock.Now, clock.Now })
	call := func() string {
		res, err := h.mod.Complete(bg, llm.Request{Prompt: "x"})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(25)
		if res.Deployment == "a" {
			want = time.Duration(aDelay.Load()).Milliseconds()
		}
		if res.LatencyMS != want {
			t.Fatalf("latency_ms %d from %s, want %d", res.LatencyMS, res.Deployment, want)
		}
		return res.Deployment
	}
	share := func(list []string, name string) float64 {
		n := 0
		for _, x := range list {
			if x == name {
				n++
			}
		}
		return float64(n) / float64(len(list))
	}
	var phase1 []string
	for i := 0; i < 40; i++ {
		phase1 = append(phase1, call())
	}
	// Each is measured once; then a, except one pick in 20 that goes to
	// the deployment measured least recently.
	if s := share(phase1, "a"); s < 0.9 {
		t.Fatalf("a (2ms) got %.0f%% of calls against b (25ms); want at least 90%% (%v)", 100*s, phase1)
	}
	aDelay.Store(int64(60 * time.Millisecond))
	var phase2 []string
	for i := 0; i < 80; i++ {
		phase2 = append(phase2, call())
	}
	// a's mean passes b's 25ms after about 25 slow answers.
	if s := share(phase2[50:], "b"); s < 0.9 {
		t.Fatalf("after a slowed to 60ms, b got %.0f%% of the last 30 calls; want at least 90%% (%v)", 100*s, phase2)
	}
}

func TestCapacityAwareRoutingAvoidsAnExhaustedDeployment(t *testing.T) {
	a := llmtest.New(t, llmtest.OpenAI, "a", "")
	b := llmtest.New(t, llmtest.OpenAI, "b", "")
	a.SetHeader(llmtest.CapacityHeaders(llmtest.OpenAI, 0, 150000, time.Minute))   // no requests left this minute
	b.SetHeader(llmtest.CapacityHeaders(llmtest.OpenAI, 400, 150000, time.Minute)) // 400 of 500 left
	h := newHarness(t, parse(t, `
providers:
  a: {type: openai, base_url: %s}
  b: {type: openai, base_url: %s}
models:
  default:
    strategy: capacity
    deployments:
      - {name: a, provider: a, model: m}
      - {name: b, provider: b, model: m}
`, a.URL(), b.URL()))
	for i := 0; i < 10; i++ {
		if _, err := h.mod.Complete(bg, llm.Request{Prompt: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if a.Calls() != 1 || b.Calls() != 9 {
		t.Fatalf("a (headers: 0 requests left) got %d calls, b %d; want 1 and 9", a.Calls(), b.Calls())
	}
	for _, d := range h.mod.Health() {
		if d.Name == "a" && d.RemainingRequests != 0 {
			t.Fatalf("health of a: %+v", d)
		}
	}
	// The exhausted deployment is skipped by every strategy, not only
	// capacity: a script-visible call says why.
	h.one(`llm("y")`)
	skipped := fmt.Sprint(h.details("run-1")[0]["skipped"])
	if !strings.Contains(skipped, "0 requests left") {
		t.Fatalf("journal detail skipped = %s", skipped)
	}
	if a.Calls() != 1 {
		t.Fatalf("a was called again")
	}
}

func TestContextLengthMovesToTheLargerModel(t *testing.T) {
	small := llmtest.New(t, llmtest.OpenAI, "small", "")
	large := llmtest.New(t, llmtest.Gemini, "large", "")
	small.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.ContextLength} })
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
  gemini: {type: gemini, base_url: %s}
models:
  default:
    context_fallback: long
    deployments:
      - {name: small, provider: openai, model: gpt-4o-mini}
  long:
    deployments:
      - {name: large, provider: gemini, model: gemini-2.5-pro, context_window: 1000000}
  tiny:
    context_fallback: long
    deployments:
      - {name: tiny, provider: openai, model: gpt-tiny, context_window: 8}
`, small.URL(), large.URL()))
	res := h.one(`llm("a very long document ...")`)
	if res["deployment"] != "large" || res["provider"] != "gemini" {
		t.Fatalf("result %v, want the larger model", res)
	}
	if fmt.Sprint(h.details("run-1")[0]["context_fallback"]) != "[long]" {
		t.Fatalf("detail %v", h.details("run-1")[0])
	}
	// A deployment whose context window is known is skipped before the call.
	before := small.Calls()
	res = h.one(`llm("this prompt is longer than eight tokens for sure, by a wide margin", model="tiny")`)
	if res["deployment"] != "large" || small.Calls() != before {
		t.Fatalf("result %v, small calls %d→%d: want the fallback without calling the small model", res, before, small.Calls())
	}
	// Without a context_fallback it is an error of its own kind.
	h2 := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o-mini}
`, small.URL()))
	if kind, msg := h2.fails(`llm("long")`); kind != "context_length" || !strings.Contains(msg, "context_fallback") {
		t.Fatalf("kind %q: %s", kind, msg)
	}
}

func TestRefusalSafeResponseOrError(t *testing.T) {
	an := llmtest.New(t, llmtest.Anthropic, "anthropic", anthropicKey)
	an.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Refusal} })
	h := newHarness(t, parse(t, `
providers:
  anthropic: {type: anthropic, base_url: %s}
models:
  default:
    on_refusal: "I can't help with that here; a person will follow up."
    deployments:
      - {provider: anthropic, model: claude}
  strict:
    deployments:
      - {provider: anthropic, model: claude}
`, an.URL()))
	res := h.one(`llm("something disallowed")`)
	if res["refused"] != true || res["text"] != "I can't help with that here; a person will follow up." || res["degraded"] != false {
		t.Fatalf("result %v, want the safe response", res)
	}
	kind, msg := h.fails(`llm("something disallowed", model="strict")`)
	if kind != "refusal" || !contains(msg, "refused", "on_refusal", "ask a human") {
		t.Fatalf("kind %q: %s", kind, msg)
	}
	if an.Calls() != 2 {
		t.Fatalf("a refusal was retried: %d calls", an.Calls())
	}
}

func TestAllDownCachedThenTemplateThenError(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "openai", "")
	var down atomic.Bool
	srv.Handle(func(r *llmtest.Request) llmtest.Reply {
		if down.Load() {
			return llmtest.Reply{Fault: llmtest.Unavailable}
		}
		return llmtest.Reply{Text: "fresh answer to " + r.LastUser()}
	})
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
health: {min_requests: 1000}
models:
  default:
    retry: {max_attempts: 2, initial: 10ms}
    template: "The assistant is unavailable; your request was queued."
    deployments:
      - {provider: openai, model: gpt-4o}
  bare:
    retry: {max_attempts: 2, initial: 10ms}
    deployments:
      - {provider: openai, model: gpt-4o}
`, srv.URL()))
	first := h.one(`llm("What is our refund policy?")`)
	if first["cached"] != false || first["degraded"] != false {
		t.Fatalf("first %v", first)
	}
	down.Store(true)
	cached := h.one(`llm("What is our refund policy?")`)
	if cached["text"] != first["text"] || cached["cached"] != true || cached["degraded"] != true || cached["attempts"] != 2.0 {
		t.Fatalf("all down: %v, want the cached answer %q, degraded", cached, first["text"])
	}
	tmpl := h.one(`llm("A question never asked before")`)
	if tmpl["text"] != "The assistant is unavailable; your request was queued." || tmpl["degraded"] != true || tmpl["cached"] != false || tmpl["provider"] != "template" {
		t.Fatalf("no cache: %v, want the template", tmpl)
	}
	kind, msg := h.fails(`llm("Another new question", model="bare")`)
	if kind != "unavailable" || !contains(msg, "openai/gpt-4o", "HTTP 503", "no cached answer", "no template") {
		t.Fatalf("kind %q: %s", kind, msg)
	}
}

func TestSchemaRepairLoop(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "openai", "")
	srv.Script(
		llmtest.Reply{Text: "Sure! The label is good."},
		llmtest.Reply{Text: `{"label": "great", "score": 4}`},
		llmtest.Reply{Text: "```json\n{\"label\": \"good\", \"score\": 4}\n```"},
	)
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o}
`, srv.URL()))
	src := `
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["good", "bad"]}, "score": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["label", "score"],
}
def main(input):
    r = llm("Classify: the release went well", schema=SCHEMA)
    return {"label": r.json["label"], "score": r.json["score"], "attempts": r.attempts}
`
	res := h.result(h.run(src))
	if res["label"] != "good" || res["score"] != 4.0 || res["attempts"] != 3.0 {
		t.Fatalf("result %v", res)
	}
	reqs := srv.Requests()
	second := reqs[1].Messages
	if len(second) != 3 || second[1].Role != "assistant" || second[1].Content != "Sure! The label is good." ||
		!contains(second[2].Content, "not valid", "not JSON") {
		t.Fatalf("the repair request did not feed the error back: %+v", second)
	}
	if !contains(reqs[2].Messages[4].Content, "not valid", "label") {
		t.Fatalf("second repair: %+v", reqs[2].Messages)
	}
	if !reqs[0].JSONMode {
		t.Fatalf("the request did not ask for JSON")
	}
	// Bounded: invalid every time is an error after schema_retries repairs.
	srv.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Text: "not json"} })
	before := srv.Calls()
	kind, msg := h.fails(`llm("again", schema={"type": "object"})`)
	if kind != "invalid_output" || srv.Calls()-before != 3 || !strings.Contains(msg, "2 repair attempts") {
		t.Fatalf("kind %q after %d calls: %s", kind, srv.Calls()-before, msg)
	}
}

// The deadline bounds the whole call; an attempt's timeout moves on to
// the next tier. Both are real time for a request in flight (the
// network's), kept to a few tens of milliseconds here.
func TestDeadlineCoversRetriesAndFallbacks(t *testing.T) {
	hang := llmtest.New(t, llmtest.OpenAI, "hang", "")
	ok := llmtest.New(t, llmtest.Compatible, "ok", "")
	hang.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Hang} })
	h := newHarness(t, parse(t, `
providers:
  hang: {type: openai, base_url: %s}
  slow: {type: openai, base_url: %s, timeout: 30ms}
  ok: {type: openai_compatible, base_url: %s}
models:
  default:
    deployments:
      - {name: hang, provider: hang, model: m}
  failover:
    deployments:
      - {name: hang, provider: slow, model: m, tier: 1}
      - {name: ok, provider: ok, model: m, tier: 2}
`, hang.URL(), hang.URL(), ok.URL()))
	kind, msg := h.fails(`llm("x", deadline=0.05)`)
	if kind != "timeout" || !strings.Contains(msg, "deadline") {
		t.Fatalf("kind %q: %s", kind, msg)
	}
	// A per-attempt timeout moves on to the next tier within the deadline.
	res := h.one(`llm("x", model="failover", deadline=60)`)
	if res["deployment"] != "ok" || res["tier"] != 2.0 {
		t.Fatalf("result %v", res)
	}
	at := attemptsOf(h.details("run-2")[0])
	if at[0]["class"] != "timeout" {
		t.Fatalf("first attempt %v, want a timeout; detail %v", at[0], h.details("run-2")[0])
	}
}

func TestAzureRegionsAndCompatibleServer(t *testing.T) {
	east := llmtest.New(t, llmtest.Azure, "eastus", azureKey)
	west := llmtest.New(t, llmtest.Azure, "westeurope", azureKey)
	local := llmtest.New(t, llmtest.Compatible, "ollama", "")
	east.Handle(func(*llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 6 * time.Second}
	})
	h := newHarness(t, parse(t, `
providers:
  azure-east: {type: azure, base_url: %s, api_version: "2024-10-21"}
  azure-west: {type: azure, base_url: %s}
  ollama: {type: openai_compatible, base_url: %s}
models:
  default:
    strategy: priority
    deployments:
      - {name: east, provider: azure-east, model: gpt4o-prod, region: eastus}
      - {name: west, provider: azure-west, model: gpt4o-prod, region: westeurope}
  local:
    deployments:
      - {provider: ollama, model: "llama3.2:3b"}
`, east.URL(), west.URL(), local.URL()), func(o *runtime.Options) { o.Clock = runtest.NewClock().Now })
	res := h.one(`llm("hello")`)
	if res["deployment"] != "west" {
		t.Fatalf("result %v: a 429 in one region should move to the other at once", res)
	}
	r := west.Requests()[0]
	if r.Path != "/openai/deployments/gpt4o-prod/chat/completions" || r.Query.Get("api-version") == "" || r.Key != azureKey {
		t.Fatalf("Azure request %s?%s key ok=%v", r.Path, r.Query.Encode(), r.Key == azureKey)
	}
	// The 429'd region cools down for the wait it asked for: the next
	// call goes straight to the other region.
	h.one(`llm("again")`)
	if east.Calls() != 1 {
		t.Fatalf("east was called %d times during its cooldown", east.Calls())
	}
	res = h.one(`llm("hi", model="local")`)
	if res["provider"] != "ollama" || local.Requests()[0].Model != "llama3.2:3b" || local.Requests()[0].Header.Get("Authorization") != "" {
		t.Fatalf("compatible server: %v", res)
	}
}

func TestIdempotencyKeyAnswersAReexecutedCall(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "openai", "")
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o}
`, srv.URL()))
	req := llm.Request{Prompt: "hello", Key: "run-x/7"}
	a, err := h.mod.Complete(bg, req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.mod.Complete(bg, req)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Calls() != 1 || a.Text != b.Text {
		t.Fatalf("the same call key asked the provider %d times", srv.Calls())
	}
	if srv.Requests()[0].IdempotencyKey != "run-x/7" {
		t.Fatalf("Idempotency-Key %q", srv.Requests()[0].IdempotencyKey)
	}
	// A different request under the same key is not answered from it.
	if _, err := h.mod.Complete(bg, llm.Request{Prompt: "different", Key: "run-x/7"}); err != nil || srv.Calls() != 2 {
		t.Fatalf("err %v, calls %d", err, srv.Calls())
	}
}

func TestInvalidArguments(t *testing.T) {
	h := newHarness(t, llm.DefaultConfig(func(string) string { return "" }))
	for _, call := range []string{
		`llm()`,
		`llm(123)`,
		`llm("x", model="nope")`,
		`llm("x", temperature=5)`,
		`llm("x", max_tokens=0)`,
		`llm(messages=[{"role": "robot", "content": "x"}])`,
		`llm(messages=[{"role": "user", "content": secret("OPENAI_API_KEY")}])`,
		`llm("x", schema={"type": 12})`,
		`llm("x", schema="object")`,
	} {
		kind, msg := h.fails(call)
		if kind != "invalid_argument" && kind != "unknown_model" {
			t.Errorf("%s: kind %q (%s)", call, kind, msg)
		}
	}
}

func TestMissingKeySkipsTheDeployment(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", "")
	an := llmtest.New(t, llmtest.Anthropic, "anthropic", "")
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s, api_key: env(NOT_SET_ANYWHERE)}
  anthropic: {type: anthropic, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o, tier: 1}
      - {provider: anthropic, model: claude, tier: 2}
  only:
    deployments:
      - {provider: openai, model: gpt-4o}
`, oa.URL(), an.URL()))
	res := h.one(`llm("hello")`)
	if res["provider"] != "anthropic" || oa.Calls() != 0 {
		t.Fatalf("result %v, openai calls %d", res, oa.Calls())
	}
	if !strings.Contains(fmt.Sprint(h.details("run-1")[0]["skipped"]), "env(NOT_SET_ANYWHERE)") {
		t.Fatalf("detail %v", h.details("run-1")[0])
	}
	kind, msg := h.fails(`llm("hello", model="only")`)
	if kind != "auth" || !strings.Contains(msg, "env(NOT_SET_ANYWHERE)") {
		t.Fatalf("kind %q: %s", kind, msg)
	}
}

// Concurrent calls share health state; run with -race.
func TestConcurrentCallsShareHealth(t *testing.T) {
	a := llmtest.New(t, llmtest.OpenAI, "a", "")
	b := llmtest.New(t, llmtest.Anthropic, "b", "")
	var n atomic.Int64
	a.Handle(func(*llmtest.Request) llmtest.Reply {
		switch n.Add(1) % 4 {
		case 0:
			return llmtest.Reply{Fault: llmtest.ServerError}
		case 1:
			return llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 20 * time.Millisecond}
		}
		return llmtest.Reply{}
	})
	b.SetHeader(llmtest.CapacityHeaders(llmtest.Anthropic, 1000, 100000, time.Minute))
	h := newHarness(t, parse(t, `
providers:
  a: {type: openai, base_url: %s}
  b: {type: anthropic, base_url: %s}
health: {min_requests: 20, cooldown: 100ms}
models:
  default:
    strategy: latency
    retry: {initial: 10ms}
    deployments:
      - {name: a, provider: a, model: m, rpm: 100000}
      - {name: b, provider: b, model: m}
  cap:
    strategy: capacity
    fallbacks: [default]
    deployments:
      - {name: a2, provider: a, model: m}
      - {name: b2, provider: b, model: m}
`, a.URL(), b.URL()))
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		go func(g int) {
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				model := "default"
				if (g+i)%2 == 0 {
					model = "cap"
				}
				_, err = h.mod.Complete(bg, llm.Request{Prompt: fmt.Sprintf("g%d i%d", g, i), Model: model})
			}
			errs <- err
		}(g)
	}
	for g := 0; g < 16; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Deployments of the same endpoint share one health state.
	hs := h.mod.Health()
	if len(hs) != 2 || fmt.Sprint(hs[0].Aliases) != "[cap default]" || hs[0].Calls+hs[1].Calls < 320 {
		t.Fatalf("health: %+v", hs)
	}
}
