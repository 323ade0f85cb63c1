package llm_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/builtins/llm/provider"
)

func TestConfigErrorsNameTheLine(t *testing.T) {
	src := `version: 1
providers:
  sim:
    type: fake
    failure_rate: 2
  oa:
    type: openai
    api_key: sk-live-abcdefghijklmnopqrstuvwxyz
  az:
    type: azure
models:
  default:
    strategy: fastest
    timeout: soon
    fallbacks: [missing]
    deployments:
      - provider: sim
        tier: 0
      - provider: nope
        model: x
`
	_, err := llm.ParseConfig("models.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	want := map[string]string{
		"models.yaml:5:":  "failure_rate",
		"models.yaml:8:":  "api_key must say where the key is",
		"models.yaml:9:":  "needs a base_url",
		"models.yaml:13:": `unknown strategy "fastest"`,
		"models.yaml:14:": `"soon" is not a duration`,
		"models.yaml:15:": `fallback "missing" is not a model alias`,
		"models.yaml:18:": "tier must be between 1 and 10",
		"models.yaml:19:": `unknown provider "nope"`,
	}
	msg := err.Error()
	for prefix, sub := range want {
		found := false
		for _, line := range strings.Split(msg, "\n") {
			if strings.HasPrefix(line, prefix) && strings.Contains(line, sub) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q error at %s; got:\n%s", sub, prefix, msg)
		}
	}
	if strings.Contains(msg, "abcdefghijklmnop") {
		t.Fatalf("the error repeats a key value: %s", msg)
	}
	var ce *llm.ConfigError
	if !errors.As(err, &ce) || ce.File != "models.yaml" || ce.Line == 0 {
		t.Fatalf("errors.As ConfigError: %+v", ce)
	}

	for _, tc := range []struct{ src, want string }{
		{"providers:\n  sim:\n    type: fake\n    colour: blue\n", `x.yaml:4: unknown field "colour"`},
		{"providers:\n  sim: [\n", "x.yaml:2:"},
		{"providers:\n  sim: {type: fake}\n", "x.yaml: no models"},
	} {
		_, err := llm.ParseConfig("x.yaml", []byte(tc.src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}

// TestSpecFullExampleIsValid keeps spec/config.md's full example honest.
func TestSpecFullExampleIsValid(t *testing.T) {
	doc, err := os.ReadFile("../../spec/config.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- full example -->\\s*```yaml\\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("spec/config.md has no ```yaml block after <!-- full example -->")
	}
	cfg, err := llm.ParseConfig("spec/config.md", m[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := llm.New(llm.Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	def := cfg.Models["default"]
	if def == nil || len(def.Deployments) < 3 || def.ContextFallback == "" || def.Template == nil || def.OnRefusal == nil {
		t.Fatalf("the full example should show every alias feature: %+v", def)
	}
}

func TestScriptConfigsAreValid(t *testing.T) {
	for _, f := range []string{"../../scripts/failover_demo.yaml", "../../scripts/summarize_classify.yaml"} {
		cfg, err := llm.LoadConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := llm.New(llm.Options{Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDefaultConfigWithoutKeysIsFake(t *testing.T) {
	cfg := llm.DefaultConfig(func(string) string { return "" })
	for _, name := range []string{"default", "fake", "fake-failover"} {
		if cfg.Models[name] == nil {
			t.Fatalf("alias %s missing", name)
		}
	}
	if p := cfg.Providers[cfg.Models["default"].Deployments[0].Provider]; p.Type != provider.Fake {
		t.Fatalf("default alias without keys uses %s", p.Type)
	}
	if cfg.Models["openai"] != nil {
		t.Fatal("an openai alias without OPENAI_API_KEY")
	}
	m, err := llm.New(llm.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Complete(bg, llm.Request{Prompt: "Summarise: offline works"})
	if err != nil || res.Provider != "fake" || !strings.Contains(res.Text, "offline works") {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestDefaultConfigDetectsKeysAndBaseURLs(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", openAIKey)
	an := llmtest.New(t, llmtest.Anthropic, "anthropic", anthropicKey)
	oa.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Unavailable} })
	t.Setenv("OPENAI_API_KEY", openAIKey)
	t.Setenv("OPENAI_BASE_URL", oa.URL())
	t.Setenv("ANTHROPIC_API_KEY", anthropicKey)
	t.Setenv("ANTHROPIC_BASE_URL", an.URL())
	t.Setenv("GEMINI_API_KEY", geminiKey)
	cfg := llm.DefaultConfig(os.Getenv)
	def := cfg.Models["default"]
	if len(def.Deployments) != 3 || def.Deployments[0].Provider != "openai" || def.Deployments[1].Provider != "anthropic" ||
		def.Deployments[2].Provider != "gemini" || def.Deployments[2].Tier != 3 {
		t.Fatalf("default alias: %+v", def.Deployments)
	}
	if cfg.Providers["gemini"].APIKey.Env != "GEMINI_API_KEY" || cfg.Providers["openai"].BaseURL != oa.URL() {
		t.Fatalf("providers: %+v %+v", cfg.Providers["gemini"], cfg.Providers["openai"])
	}
	// The configuration holds variable names, never values.
	for _, p := range cfg.Providers {
		if strings.Contains(p.APIKey.String(), "sk-") {
			t.Fatalf("key value in the configuration: %s", p.APIKey)
		}
	}
	// No Secrets option: keys come from the environment at request time.
	m, err := llm.New(llm.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Complete(bg, llm.Request{Prompt: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Provider != "anthropic" || res.Tier != 2 || oa.Calls() != 1 || an.Requests()[0].Key != anthropicKey || oa.Requests()[0].Key != openAIKey {
		t.Fatalf("result %+v: want OpenAI (503) then Anthropic from the environment", res)
	}
}

func TestLatencyWindowAndHealthSettings(t *testing.T) {
	cfg := parse(t, `
providers:
  sim: {type: fake, latency: 1ms}
health:
  failure_rate: 0.25
  min_requests: 10
  window: 30s
  cooldown: 2s
  half_open_probes: 2
  rate_limit_cooldown: 500ms
  quota_cooldown: 10m
  latency_window: 20
cache: {ttl: 1h, idempotency_ttl: 48h}
models:
  default:
    timeout: 5
    deadline: 1m30s
    cache_ttl: 0s
    deployments:
      - {provider: sim}
`)
	h := cfg.Health
	if h.FailureRate != 0.25 || h.MinRequests != 10 || h.Window != 30*time.Second || h.Cooldown != 2*time.Second || h.HalfOpenProbes != 2 ||
		h.RateLimitCooldown != 500*time.Millisecond || h.QuotaCooldown != 10*time.Minute || h.LatencyWindow != 20 {
		t.Fatalf("health %+v", h)
	}
	a := cfg.Models["default"]
	if a.Timeout != 5*time.Second || a.Deadline != 90*time.Second || a.CacheTTL != 0 || cfg.Cache.IdempotencyTTL != 48*time.Hour {
		t.Fatalf("alias %+v cache %+v", a, cfg.Cache)
	}
	if a.Deployments[0].Model != "fake" || a.Deployments[0].Name != "sim/fake" {
		t.Fatalf("fake deployment defaults: %+v", a.Deployments[0])
	}
}
