package chaos_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/chaos"
)

// llmConfig is a two-tier alias: the deployment under test on tier 1, a
// steady OpenAI-compatible server on tier 2.
func llmConfig(t testing.TB, flavor, primaryURL, backupURL, extra string) *llm.Config {
	t.Helper()
	key := map[string]string{"openai": "api_key: env(OPENAI_API_KEY), ", "azure": "api_key: env(AZURE_OPENAI_API_KEY), ",
		"anthropic": "api_key: env(ANTHROPIC_API_KEY), ", "gemini": "api_key: env(GEMINI_API_KEY), "}[flavor]
	base := ""
	if primaryURL != "" {
		base = "base_url: " + primaryURL + ", "
	}
	model := "m1"
	if flavor == "fake" {
		model = "fake"
	}
	src := fmt.Sprintf(`
providers:
  primary: {type: %s, %s%s}
  backup: {type: openai_compatible, base_url: %s}
models:
  default:
    timeout: 300ms
    retry: {initial: 10ms, jitter: 0}
    %s
    deployments:
      - {name: primary, provider: primary, model: %s, tier: 1}
      - {name: backup, provider: backup, model: m2, tier: 2}
`, flavor, key, strings.TrimSuffix(base, ", "), backupURL, extra, model)
	src = strings.Replace(src, ", }", "}", 1)
	cfg, err := llm.ParseConfig("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, src)
	}
	return cfg
}

// wantCode is the provider's own error code or type for an injected
// status, as builtins/llm/provider reads it from the body ("" where the
// body is a gateway's HTML page).
func wantCode(flavor string, status int) string {
	switch flavor {
	case "anthropic":
		return map[int]string{429: "rate_limit_error", 500: "api_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error"}[status]
	case "gemini":
		return map[int]string{429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE"}[status]
	case "azure":
		return map[int]string{429: "429", 500: "InternalServerError", 503: "ServiceUnavailable", 529: "ServiceUnavailable"}[status]
	case "fake":
		return map[int]string{429: "rate_limit_exceeded", 500: "internal_server_error", 502: "bad_gateway", 503: "service_unavailable", 504: "gateway_timeout", 529: "overloaded_error"}[status]
	}
	return map[int]string{429: "rate_limit_exceeded", 500: "server_error", 503: "server_error", 529: "server_error"}[status]
}

// Each fault, injected into the first request to the tier-1 deployment, is
// classified by the llm builtin as the real failure would be (spec/llm.md):
// rate limits, server errors, 529, gateway timeouts, hangs and resets fail
// over to tier 2 at once; latency and slow bodies within the timeout are
// waited out.
func TestLLMFaults(t *testing.T) {
	flavors := []llmtest.Flavor{llmtest.OpenAI, llmtest.Azure, llmtest.Compatible, llmtest.Anthropic, llmtest.Gemini, "fake"}
	type fault struct {
		spec   string
		status int    // on the wire
		class  string // the failed attempt's class; "" when tier 1 answers
		wait   func(flavor string) int64
	}
	faults := []fault{
		{spec: "429=50ms", status: 429, class: "rate_limit", wait: func(f string) int64 {
			if f == "anthropic" {
				return 1000 // retry-after in whole seconds
			}
			return 50
		}},
		{spec: "500", status: 500, class: "server"},
		{spec: "502", status: 502, class: "server"},
		{spec: "503", status: 503, class: "server"},
		{spec: "504", status: 504, class: "timeout"},
		{spec: "529", status: 529, class: "server"},
		{spec: "timeout", class: "timeout"},
		{spec: "reset", class: "network"},
		{spec: "latency=60ms"},
		{spec: "slow_body=200/5ms"},
		{spec: "slow_body=8/50ms", class: "timeout"}, // far slower than the 300ms timeout
	}
	backup := llmtest.New(t, llmtest.Compatible, "backup", "")
	for _, fl := range flavors {
		flavor := string(fl)
		for _, f := range faults {
			t.Run(flavor+"/"+f.spec, func(t *testing.T) {
				var srv *llmtest.Server
				url := ""
				if flavor != "fake" {
					srv = llmtest.New(t, fl, "primary", "")
					url = srv.URL()
				}
				h := newHarness(t, inline(t, "llm[primary]:"+f.spec+"#1", 3), setup{llm: llmConfig(t, flavor, url, backup.URL(), "")})
				res := h.result(`def main(input):
    return llm("Summarise the incident report.")
`, nil)
				d := h.details("run-1")[0]
				at := attempts(d)
				if f.class == "" {
					if res["tier"] != 1.0 || res["attempts"] != 1.0 || len(at) != 1 {
						t.Fatalf("result %v, attempts %v: want tier 1 to answer at once", res, at)
					}
					if strings.HasPrefix(f.spec, "latency") && num(res["latency_ms"]) < 60 {
						t.Fatalf("latency %v ms: want at least the 60ms injected", res["latency_ms"])
					}
				} else {
					if res["tier"] != 2.0 || res["deployment"] != "backup" || res["attempts"] != 2.0 || res["degraded"] != false {
						t.Fatalf("result %v: want tier 2 after one failed attempt", res)
					}
					a := at[0]
					status := f.status
					if status == 529 && flavor != "anthropic" && flavor != "fake" {
						status = 503 // only Anthropic (and the fake) speak 529
					}
					if a["deployment"] != "primary" || a["class"] != f.class || num(a["status"]) != status {
						t.Fatalf("first attempt %v: want class %s, status %d", a, f.class, status)
					}
					if f.status != 0 {
						if code := wantCode(flavor, status); code != "" && !strings.Contains(a["error"].(string), "("+code+")") {
							t.Fatalf("first attempt's error %q: want the provider's code %s", a["error"], code)
						}
					}
					if f.wait != nil && int64(num(a["retry_after_ms"])) != f.wait(flavor) {
						t.Fatalf("first attempt %v: want retry_after_ms %d", a, f.wait(flavor))
					}
					if d["waits"] != nil {
						t.Fatalf("waits %v: failover must be immediate", d["waits"])
					}
				}
				// Injected statuses, hangs and resets happen before the
				// request leaves: the server never saw it.
				if srv != nil {
					want := 0
					if f.class == "" || strings.HasPrefix(f.spec, "slow_body") {
						want = 1
					}
					if srv.Calls() != want {
						t.Fatalf("the primary server received %d requests, want %d", srv.Calls(), want)
					}
				}
				ev := h.inj.Events()
				target := "llm/primary"
				if srv != nil {
					target += "@" + strings.TrimPrefix(strings.TrimSuffix(srv.URL(), "/v1"), "http://")
				}
				if len(ev) != 1 || ev[0].Target != target || ev[0].N != 1 || ev[0].Provider != "primary" || ev[0].Key != "run-1/1" {
					t.Fatalf("events %+v: want one fault on the first request to %s, with the call's key", ev, target)
				}
			})
		}
	}
}

// A rate limit on the only deployment: the call waits the provider's
// retry-after and asks the same deployment again.
func TestLLMRateLimitRetriesAfterTheWait(t *testing.T) {
	for _, fl := range []llmtest.Flavor{llmtest.OpenAI, llmtest.Gemini} {
		t.Run(string(fl), func(t *testing.T) {
			srv := llmtest.New(t, fl, "only", "")
			cfg, err := llm.ParseConfig("t.yaml", []byte(fmt.Sprintf(`
providers:
  p: {type: %s, base_url: %s}
models:
  default:
    retry: {initial: 10ms, jitter: 0}
    deployments:
      - {provider: p, model: m}
`, fl, srv.URL())))
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, inline(t, "llm:429=120ms#1", 1), setup{llm: cfg})
			res := h.result("def main(input):\n    return llm(\"hello\")\n", nil)
			if res["attempts"] != 2.0 || res["tier"] != 1.0 || srv.Calls() != 1 {
				t.Fatalf("result %v, server calls %d: want the second attempt to answer", res, srv.Calls())
			}
			waits, _ := h.details("run-1")[0]["waits"].([]any)
			if len(waits) != 1 || num(waits[0].(map[string]any)["wait_ms"]) < 108 {
				t.Fatalf("waits %v: want the 120ms the provider asked for", waits)
			}
			tl := h.tally("run-1")
			if tl.LLMCalls != 1 || tl.LLMRetries != 1 || tl.LLMFallbacks != 0 || tl.LLMDegraded != 0 {
				t.Fatalf("tally %+v", tl)
			}
		})
	}
}

// When every tier keeps failing, the alias's template answers, degraded.
func TestLLMDegradedUnderAnOutage(t *testing.T) {
	primary := llmtest.New(t, llmtest.Anthropic, "primary", "")
	backup := llmtest.New(t, llmtest.Compatible, "backup", "")
	h := newHarness(t, inline(t, "llm[anthropic]:529,llm[compatible]:reset", 1), setup{
		llm: llmConfig(t, "anthropic", primary.URL(), backup.URL(), `template: "We are busy; your request is queued."`)})
	res := h.result("def main(input):\n    return llm(\"hello\")\n", nil)
	if res["degraded"] != true || res["text"] != "We are busy; your request is queued." || res["attempts"] != 6.0 {
		t.Fatalf("result %v: want the template after 3 rounds of 2 failed attempts", res)
	}
	if primary.Calls() != 0 || backup.Calls() != 0 {
		t.Fatalf("servers saw %d and %d requests; the faults come first", primary.Calls(), backup.Calls())
	}
	s := h.inj.Summary()
	if s.Requests != 6 || s.Faulted != 6 || s.Faults["529"] != 3 || s.Faults["reset"] != 3 {
		t.Fatalf("summary %+v", s)
	}
	tl := h.tally("run-1")
	if tl.LLMCalls != 1 || tl.LLMDegraded != 1 || tl.LLMRetries != 5 || tl.LLMFailed != 0 {
		t.Fatalf("tally %+v", tl)
	}
	if !strings.Contains(tl.String(), "1 degraded") {
		t.Fatalf("tally text %q", tl.String())
	}
}

// Without WrapProvider the transport still injects, inferring the
// provider type from the request.
func TestLLMClientInfersTheProvider(t *testing.T) {
	for _, tc := range []struct {
		flavor llmtest.Flavor
		sel    string
		code   string
	}{
		{llmtest.Anthropic, "anthropic", "overloaded_error"},
		{llmtest.Gemini, "gemini", "UNAVAILABLE"},
		{llmtest.Azure, "azure", "ServiceUnavailable"},
		{llmtest.OpenAI, "openai_compatible", "server_error"}, // on 127.0.0.1, not api.openai.com
	} {
		t.Run(string(tc.flavor), func(t *testing.T) {
			srv := llmtest.New(t, tc.flavor, "p", "")
			cfg, err := llm.ParseConfig("t.yaml", []byte(fmt.Sprintf(`
providers:
  p: {type: %s, base_url: %s, api_key: env(OPENAI_API_KEY)}
models:
  default:
    retry: {max_attempts: 1}
    deployments:
      - {provider: p, model: m}
`, tc.flavor, srv.URL())))
			if err != nil {
				t.Fatal(err)
			}
			inj := chaos.New(inline(t, "llm["+tc.sel+"]:529", 1))
			m, err := llm.New(llm.Options{Config: cfg, HTTPClient: inj.LLMClient(nil), Secrets: secrets})
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Complete(bg, llm.Request{Prompt: "hello"})
			if err == nil || !strings.Contains(err.Error(), "("+tc.code+")") {
				t.Fatalf("error %v: want the provider's %s", err, tc.code)
			}
			if ev := inj.Events(); len(ev) != 1 || ev[0].Provider != tc.sel {
				t.Fatalf("events %+v", ev)
			}
		})
	}
}
