package llm

import (
	"strings"
	"time"

	"github.com/starflow/starflow/builtins/llm/provider"
)

// The models DefaultConfig uses for each provider it detects.
const (
	DefaultOpenAIModel    = "gpt-4o-mini"
	DefaultAnthropicModel = "claude-haiku-4-5"
	DefaultGeminiModel    = "gemini-2.5-flash"
)

// DefaultConfig is the configuration used when no file is given. It
// detects providers from the standard environment variables, as the
// official SDKs do: OPENAI_API_KEY (with OPENAI_BASE_URL),
// ANTHROPIC_API_KEY (with ANTHROPIC_BASE_URL) and GEMINI_API_KEY. Only the
// variables' names enter the configuration; keys are read at request time.
//
// Aliases:
//   - "default": every detected provider, one tier each in the order
//     OpenAI, Anthropic, Gemini (so a failing provider fails over to the
//     next); with no key set, the fake provider.
//   - "openai", "anthropic", "gemini": each detected provider alone.
//   - "fake": the deterministic fake, always available offline.
//   - "fake-failover": two fakes, a primary that fails half its calls and a
//     steady secondary at tier 2, with a template answer: the failover demo.
func DefaultConfig(getenv func(string) string) *Config {
	cfg := &Config{
		Source:    "environment",
		Providers: map[string]*Provider{},
		Models:    map[string]*Alias{},
		Health:    DefaultHealth(),
		Cache:     CacheConfig{TTL: DefaultCacheTTL, IdempotencyTTL: DefaultIdempotencyTTL},
	}
	alias := func(name string, deps ...*Deployment) *Alias {
		a := &Alias{Name: name, Strategy: Weighted, Deployments: deps, MaxTiers: DefaultMaxTiers, Timeout: DefaultTimeout,
			Deadline: DefaultDeadline, Retry: DefaultRetry(), CacheTTL: cfg.Cache.TTL, SchemaRetries: DefaultSchemaRetries}
		cfg.Models[name] = a
		return a
	}
	dep := func(prov, model string, tier int) *Deployment {
		return &Deployment{Name: prov + "/" + model, Provider: prov, Model: model, Tier: tier, Weight: 1}
	}
	var def []*Deployment
	detect := []struct {
		kind          provider.Kind
		keyEnv, urlEn string
		model         string
	}{
		{provider.OpenAI, "OPENAI_API_KEY", "OPENAI_BASE_URL", DefaultOpenAIModel},
		{provider.Anthropic, "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", DefaultAnthropicModel},
		{provider.Gemini, "GEMINI_API_KEY", "", DefaultGeminiModel},
	}
	for _, d := range detect {
		if strings.TrimSpace(getenv(d.keyEnv)) == "" {
			continue
		}
		name := string(d.kind)
		p := &Provider{Name: name, Type: d.kind, APIKey: KeyRef{Env: d.keyEnv}}
		if d.urlEn != "" {
			p.BaseURL = strings.TrimRight(strings.TrimSpace(getenv(d.urlEn)), "/")
		}
		cfg.Providers[name] = p
		def = append(def, dep(name, d.model, len(def)+1))
		alias(name, dep(name, d.model, 1))
	}

	cfg.Providers["fake"] = &Provider{Name: "fake", Type: provider.Fake, Fake: provider.FakeOptions{Name: "fake", Seed: 1, Failure: provider.FakeServerError}}
	cfg.Providers["fake-flaky"] = &Provider{Name: "fake-flaky", Type: provider.Fake, Fake: provider.FakeOptions{
		Name: "fake-flaky", Seed: 7, FailureRate: 0.5, Failure: provider.FakeServerError, Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}}
	cfg.Providers["fake-steady"] = &Provider{Name: "fake-steady", Type: provider.Fake, Fake: provider.FakeOptions{
		Name: "fake-steady", Seed: 11, Failure: provider.FakeServerError, Latency: 40 * time.Millisecond, Jitter: 10 * time.Millisecond}}

	if len(def) == 0 {
		def = append(def, dep("fake", "fake-small", 1))
	}
	alias("default", def...)
	alias("fake", dep("fake", "fake-small", 1))
	ff := alias("fake-failover",
		&Deployment{Name: "primary", Provider: "fake-flaky", Model: "fake-large", Tier: 1, Weight: 1},
		&Deployment{Name: "secondary", Provider: "fake-steady", Model: "fake-small", Tier: 2, Weight: 1})
	tmpl := "(no model answered; this is the alias's template response)"
	ff.Template = &tmpl
	ff.Retry.InitialInterval = 200 * time.Millisecond
	return cfg
}
