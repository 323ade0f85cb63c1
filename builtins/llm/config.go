package llm

import (
	"github.com/starflow/starflow/internal/yamlerr"

	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/starflow/starflow/builtins/llm/provider"
	"github.com/starflow/starflow/runtime"
)

// Config is the llm module's configuration: the providers it may call, the
// model aliases scripts name, and the health and cache settings. The YAML
// form is documented in spec/config.md.
type Config struct {
	Source    string               // where it came from: a file name, or "environment"
	Providers map[string]*Provider // by name
	Models    map[string]*Alias    // by alias name
	Health    HealthConfig
	Cache     CacheConfig
}

// KeyRef says where an API key comes from. It never holds the key.
type KeyRef struct {
	Env    string // env(NAME): the environment variable NAME, read at request time
	Secret string // secret(NAME): the starflow secret NAME, resolved like secret() in scripts
}

// String returns the YAML form: "env(NAME)", "secret(NAME)" or "".
func (k KeyRef) String() string {
	switch {
	case k.Env != "":
		return "env(" + k.Env + ")"
	case k.Secret != "":
		return "secret(" + k.Secret + ")"
	}
	return ""
}

// IsZero reports whether no key is configured.
func (k KeyRef) IsZero() bool { return k.Env == "" && k.Secret == "" }

// Provider is one provider account or endpoint.
type Provider struct {
	Name       string
	Type       provider.Kind
	BaseURL    string // "" means the provider's public endpoint
	APIKey     KeyRef
	APIVersion string        // Azure api-version, Anthropic anthropic-version
	Timeout    time.Duration // per attempt, for its deployments; 0 means the alias's
	// Fake configures type fake: latency, failures, seed.
	Fake provider.FakeOptions
}

// Strategy chooses among the healthy deployments of one tier.
type Strategy string

// The routing strategies.
const (
	// Weighted spreads calls in proportion to the deployments' weights
	// (smooth weighted round-robin: exact proportions, evenly interleaved).
	// With equal weights it is round-robin. The default.
	Weighted Strategy = "weighted"
	// RoundRobin takes the deployments in turn, ignoring weights.
	RoundRobin Strategy = "round_robin"
	// Latency prefers the deployment with the lowest mean latency over its
	// last calls (timeouts count double); one call in 20 goes to the
	// deployment measured least recently, so a recovered one is noticed.
	Latency Strategy = "latency"
	// Priority always takes the first healthy deployment in listed order.
	Priority Strategy = "priority"
	// Capacity prefers the deployment with the most headroom left, from the
	// providers' rate-limit headers and local rpm/tpm counters.
	Capacity Strategy = "capacity"
)

var strategies = []Strategy{Weighted, RoundRobin, Latency, Priority, Capacity}

// Alias is a model name scripts use (model="default"), and how calls to it
// are routed.
type Alias struct {
	Name        string
	Strategy    Strategy
	Deployments []*Deployment
	// Fallbacks are aliases whose tiers follow this alias's own, in order.
	Fallbacks []string
	// ContextFallback is the alias a call moves to when its prompt is too
	// long for this alias's models.
	ContextFallback string
	MaxTiers        int           // the fallback chain's bound; default 3
	Timeout         time.Duration // per attempt; default 60s
	Deadline        time.Duration // whole call, all retries, waits and fallbacks; default 3m
	// Retry bounds the rounds through the chain (MaxAttempts) and the waits
	// between them. Default: 3 rounds, 1s initial, x2, 20s cap, ±20%.
	Retry    runtime.RetryPolicy
	CacheTTL time.Duration // how long answers are kept for degraded mode; 0 disables
	// OnRefusal, if set, is the answer returned when a model refuses.
	OnRefusal *string
	// Template, if set, is the answer returned (degraded) when every tier
	// failed and no cached answer exists.
	Template      *string
	SchemaRetries int // repair attempts after invalid structured output; default 2
}

// Deployment is one model at one provider endpoint, as a member of an alias.
type Deployment struct {
	Name          string // unique within its alias; default "<provider>/<model>"
	Provider      string
	Model         string // the provider's model name (Azure: the deployment name)
	Region        string // informative, shown in results and health
	BaseURL       string // overrides the provider's (e.g. an Azure resource per region)
	Tier          int    // 1 is tried first; default 1
	Weight        int    // for the weighted strategy; default 1; 0 never picks it
	RPM           int    // requests per minute this deployment may take; 0: no local limit
	TPM           int    // tokens per minute; 0: no local limit
	ContextWindow int    // tokens; 0: unknown (not checked before calling)
	InputPrice    float64
	OutputPrice   float64       // USD per million tokens, for cost accounting
	Timeout       time.Duration // per attempt; 0: the provider's, else the alias's
}

// HealthConfig configures circuit breakers and cooldowns.
type HealthConfig struct {
	FailureRate       float64       // open the breaker when failures exceed this share; default 0.5
	MinRequests       int           // ...of at least this many calls in the window; default 5
	Window            time.Duration // the rolling window; default 1m
	Cooldown          time.Duration // open → half-open after this; default 30s
	HalfOpenProbes    int           // successful probes that close it again; default 1
	RateLimitCooldown time.Duration // rest after a 429 that names no wait; default 5s
	QuotaCooldown     time.Duration // rest after quota exhaustion; default 1h
	LatencyWindow     int           // calls in the latency average; default 100
}

// withDefaults fills zero fields with the defaults.
func (h HealthConfig) withDefaults() HealthConfig {
	d := DefaultHealth()
	if h.FailureRate <= 0 || h.FailureRate >= 1 {
		h.FailureRate = d.FailureRate
	}
	if h.MinRequests <= 0 {
		h.MinRequests = d.MinRequests
	}
	if h.Window <= 0 {
		h.Window = d.Window
	}
	if h.Cooldown <= 0 {
		h.Cooldown = d.Cooldown
	}
	if h.HalfOpenProbes <= 0 {
		h.HalfOpenProbes = d.HalfOpenProbes
	}
	if h.RateLimitCooldown <= 0 {
		h.RateLimitCooldown = d.RateLimitCooldown
	}
	if h.QuotaCooldown <= 0 {
		h.QuotaCooldown = d.QuotaCooldown
	}
	if h.LatencyWindow <= 0 {
		h.LatencyWindow = d.LatencyWindow
	}
	return h
}

// CacheConfig configures the response cache.
type CacheConfig struct {
	TTL            time.Duration // default for aliases; default 24h
	IdempotencyTTL time.Duration // how long an answer is kept under its call key; default 7 days
}

// Defaults.
const (
	DefaultTimeout        = 60 * time.Second
	DefaultDeadline       = 3 * time.Minute
	DefaultMaxTiers       = 3
	DefaultSchemaRetries  = 2
	DefaultCacheTTL       = 24 * time.Hour
	DefaultIdempotencyTTL = 7 * 24 * time.Hour
)

// DefaultRetry is the retry policy of aliases that set none.
func DefaultRetry() runtime.RetryPolicy {
	return runtime.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, BackoffCoefficient: 2, MaxInterval: 20 * time.Second, Jitter: 0.2}
}

// DefaultHealth returns the default health settings.
func DefaultHealth() HealthConfig {
	return HealthConfig{FailureRate: 0.5, MinRequests: 5, Window: time.Minute, Cooldown: 30 * time.Second, HalfOpenProbes: 1,
		RateLimitCooldown: 5 * time.Second, QuotaCooldown: time.Hour, LatencyWindow: 100}
}

// ConfigError is one problem in a configuration file, at a line.
type ConfigError = yamlerr.Error

// LoadConfig reads and validates a YAML configuration file. Every problem
// is reported as file:line: message (errors.Join of *ConfigError).
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llm config: %w", err)
	}
	return ParseConfig(path, data)
}

// The YAML shapes. Durations and other scalars that need checking are
// read as nodes so that problems can name their line.

type rawConfig struct {
	Version   int                     `yaml:"version"`
	Providers map[string]*rawProvider `yaml:"providers"`
	Models    map[string]*rawAlias    `yaml:"models"`
	Health    *rawHealth              `yaml:"health"`
	Cache     *rawCache               `yaml:"cache"`
	// Chaos is a fault-injection profile for the whole process, read by
	// package chaos (spec/chaos.md); the llm builtin ignores it.
	Chaos any `yaml:"chaos"`
	// Secrets and Server are read by the starflow command (spec/config.md):
	// the secrets scripts may use and the server's security settings.
	Secrets any `yaml:"secrets"`
	Server  any `yaml:"server"`
}

type rawProvider struct {
	Type        string   `yaml:"type"`
	BaseURL     string   `yaml:"base_url"`
	APIKey      string   `yaml:"api_key"`
	APIVersion  string   `yaml:"api_version"`
	Timeout     *scalar  `yaml:"timeout"`
	Latency     *scalar  `yaml:"latency"`
	Jitter      *scalar  `yaml:"jitter"`
	FailureRate *float64 `yaml:"failure_rate"`
	Failure     string   `yaml:"failure"`
	Seed        *uint64  `yaml:"seed"`
	RetryAfter  *scalar  `yaml:"retry_after"`
}

type rawAlias struct {
	Strategy        string           `yaml:"strategy"`
	Deployments     []*rawDeployment `yaml:"deployments"`
	Fallbacks       []string         `yaml:"fallbacks"`
	ContextFallback string           `yaml:"context_fallback"`
	MaxTiers        *int             `yaml:"max_tiers"`
	Timeout         *scalar          `yaml:"timeout"`
	Deadline        *scalar          `yaml:"deadline"`
	Retry           *rawRetry        `yaml:"retry"`
	CacheTTL        *scalar          `yaml:"cache_ttl"`
	OnRefusal       *string          `yaml:"on_refusal"`
	Template        *string          `yaml:"template"`
	SchemaRetries   *int             `yaml:"schema_retries"`
}

type rawRetry struct {
	MaxAttempts *int     `yaml:"max_attempts"`
	Initial     *scalar  `yaml:"initial"`
	Coefficient *float64 `yaml:"coefficient"`
	MaxInterval *scalar  `yaml:"max_interval"`
	Jitter      *float64 `yaml:"jitter"`
}

type rawDeployment struct {
	Name          string   `yaml:"name"`
	Provider      string   `yaml:"provider"`
	Model         string   `yaml:"model"`
	Region        string   `yaml:"region"`
	BaseURL       string   `yaml:"base_url"`
	Tier          *int     `yaml:"tier"`
	Weight        *int     `yaml:"weight"`
	RPM           int      `yaml:"rpm"`
	TPM           int      `yaml:"tpm"`
	ContextWindow int      `yaml:"context_window"`
	Price         *rawCost `yaml:"price"`
	Timeout       *scalar  `yaml:"timeout"`
}

type rawCost struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
}

type rawHealth struct {
	FailureRate       *float64 `yaml:"failure_rate"`
	MinRequests       *int     `yaml:"min_requests"`
	Window            *scalar  `yaml:"window"`
	Cooldown          *scalar  `yaml:"cooldown"`
	HalfOpenProbes    *int     `yaml:"half_open_probes"`
	RateLimitCooldown *scalar  `yaml:"rate_limit_cooldown"`
	QuotaCooldown     *scalar  `yaml:"quota_cooldown"`
	LatencyWindow     *int     `yaml:"latency_window"`
}

type rawCache struct {
	TTL            *scalar `yaml:"ttl"`
	IdempotencyTTL *scalar `yaml:"idempotency_ttl"`
}

// scalar keeps a YAML scalar's text and line for later parsing.
type scalar struct {
	text string
	line int
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (s *scalar) UnmarshalYAML(n ast.Node) error {
	s.line = n.GetToken().Position.Line
	if sn, ok := n.(ast.ScalarNode); ok {
		s.text = fmt.Sprint(sn.GetValue())
		return nil
	}
	s.text = n.String()
	return nil
}

// ParseConfig parses and validates YAML configuration; name is used in
// error messages (file:line: message).
func ParseConfig(name string, data []byte) (*Config, error) {
	var raw rawConfig
	if err := yaml.UnmarshalWithOptions(data, &raw, yaml.Strict()); err != nil {
		return nil, yamlError(name, err)
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(name, err)
	}
	v := &validator{file: name, ast: file}
	cfg := v.config(&raw)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	cfg.Source = name
	return cfg, nil
}

func yamlError(name string, err error) error { return yamlerr.From(name, err) }

type validator struct {
	file string
	ast  *ast.File
	errs []error
}

// line finds the line of the node at path (keys and indexes): the line of
// the key for a key, falling back to the closest existing ancestor.
func (v *validator) line(path ...any) int {
	for n := len(path); n > 0; n-- {
		if key, ok := path[n-1].(string); ok {
			if parent := v.node(path[:n-1]); parent != nil {
				if l := keyLine(parent, key); l > 0 {
					return l
				}
			}
			continue
		}
		if node := v.node(path[:n]); node != nil && node.GetToken() != nil {
			return node.GetToken().Position.Line
		}
	}
	return 0
}

func (v *validator) node(path []any) ast.Node {
	if len(path) == 0 {
		if len(v.ast.Docs) == 0 {
			return nil
		}
		return v.ast.Docs[0].Body
	}
	b := (&yaml.PathBuilder{}).Root()
	for _, p := range path {
		switch p := p.(type) {
		case string:
			b = b.Child(p)
		case int:
			b = b.Index(uint(p))
		}
	}
	node, err := b.Build().FilterFile(v.ast)
	if err != nil {
		return nil
	}
	return node
}

// keyLine returns the line of key in a mapping node, or 0.
func keyLine(n ast.Node, key string) int {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		return 0
	}
	for _, mv := range values {
		if mv.Key != nil && mv.Key.GetToken() != nil && mv.Key.GetToken().Value == key {
			return mv.Key.GetToken().Position.Line
		}
	}
	return 0
}

func (v *validator) errf(line int, format string, args ...any) {
	if len(v.errs) < 50 {
		v.errs = append(v.errs, &ConfigError{File: v.file, Line: line, Message: fmt.Sprintf(format, args...)})
	}
}

func (v *validator) at(path []any, format string, args ...any) {
	v.errf(v.line(path...), format, args...)
}

// duration parses "30s", "1m30s", "2h", or a number of seconds.
func (v *validator) duration(s *scalar, what string, def time.Duration) time.Duration {
	if s == nil {
		return def
	}
	t := strings.TrimSpace(s.text)
	if d, err := time.ParseDuration(t); err == nil && d >= 0 {
		return d
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil && f >= 0 {
		return time.Duration(f * float64(time.Second))
	}
	v.errf(s.line, "%s: %q is not a duration (write 30s, 1m30s, 2h, or a number of seconds)", what, t)
	return def
}

var (
	keyRefPattern = regexp.MustCompile(`^(env|secret)\(\s*([A-Za-z_][A-Za-z0-9_]{0,127})\s*\)$`)
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
)

// DefaultKeyEnv is the environment variable each provider type reads its
// key from when api_key is not set, as the official SDKs do.
var DefaultKeyEnv = map[provider.Kind]string{
	provider.OpenAI:    "OPENAI_API_KEY",
	provider.Anthropic: "ANTHROPIC_API_KEY",
	provider.Gemini:    "GEMINI_API_KEY",
	provider.Azure:     "AZURE_OPENAI_API_KEY",
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (v *validator) config(raw *rawConfig) *Config {
	cfg := &Config{Providers: map[string]*Provider{}, Models: map[string]*Alias{}}
	if raw.Version != 0 && raw.Version != 1 {
		v.at([]any{"version"}, "version %d is not supported (this starflow reads version 1)", raw.Version)
	}
	cfg.Health = v.health(raw.Health)
	cfg.Cache = CacheConfig{TTL: DefaultCacheTTL, IdempotencyTTL: DefaultIdempotencyTTL}
	if raw.Cache != nil {
		cfg.Cache.TTL = v.duration(raw.Cache.TTL, "cache.ttl", DefaultCacheTTL)
		cfg.Cache.IdempotencyTTL = v.duration(raw.Cache.IdempotencyTTL, "cache.idempotency_ttl", DefaultIdempotencyTTL)
	}
	if len(raw.Providers) == 0 {
		v.at([]any{"providers"}, "no providers: declare at least one under providers: (type fake works offline)")
	}
	for _, name := range sortedKeys(raw.Providers) {
		p := v.provider(name, raw.Providers[name])
		if p != nil {
			cfg.Providers[name] = p
		}
	}
	if len(raw.Models) == 0 {
		v.at([]any{"models"}, "no models: declare at least one alias under models: (scripts call model=\"default\" unless they name another)")
	}
	for _, name := range sortedKeys(raw.Models) {
		a := v.alias(name, raw.Models[name], cfg)
		if a != nil {
			cfg.Models[name] = a
		}
	}
	// References between aliases, once all are known.
	for _, name := range sortedKeys(cfg.Models) {
		a := cfg.Models[name]
		for i, f := range a.Fallbacks {
			if f == name {
				v.at([]any{"models", name, "fallbacks", i}, "model %s lists itself as a fallback", name)
			} else if cfg.Models[f] == nil {
				v.at([]any{"models", name, "fallbacks", i}, "model %s: fallback %q is not a model alias (aliases: %s)", name, f, strings.Join(sortedKeys(cfg.Models), ", "))
			}
		}
		if f := a.ContextFallback; f != "" {
			if f == name {
				v.at([]any{"models", name, "context_fallback"}, "model %s is its own context_fallback", name)
			} else if cfg.Models[f] == nil {
				v.at([]any{"models", name, "context_fallback"}, "model %s: context_fallback %q is not a model alias (aliases: %s)", name, f, strings.Join(sortedKeys(cfg.Models), ", "))
			}
		}
	}
	return cfg
}

func (v *validator) health(raw *rawHealth) HealthConfig {
	h := DefaultHealth()
	if raw == nil {
		return h
	}
	p := func(k string) []any { return []any{"health", k} }
	if raw.FailureRate != nil {
		if *raw.FailureRate <= 0 || *raw.FailureRate >= 1 {
			v.at(p("failure_rate"), "health.failure_rate must be between 0 and 1 (0.5 opens the breaker when more than half the calls fail)")
		} else {
			h.FailureRate = *raw.FailureRate
		}
	}
	if raw.MinRequests != nil {
		if *raw.MinRequests < 1 {
			v.at(p("min_requests"), "health.min_requests must be at least 1")
		} else {
			h.MinRequests = *raw.MinRequests
		}
	}
	if raw.HalfOpenProbes != nil {
		if *raw.HalfOpenProbes < 1 || *raw.HalfOpenProbes > 100 {
			v.at(p("half_open_probes"), "health.half_open_probes must be between 1 and 100")
		} else {
			h.HalfOpenProbes = *raw.HalfOpenProbes
		}
	}
	if raw.LatencyWindow != nil {
		if *raw.LatencyWindow < 1 || *raw.LatencyWindow > 10000 {
			v.at(p("latency_window"), "health.latency_window must be between 1 and 10000 calls")
		} else {
			h.LatencyWindow = *raw.LatencyWindow
		}
	}
	h.Window = v.duration(raw.Window, "health.window", h.Window)
	h.Cooldown = v.duration(raw.Cooldown, "health.cooldown", h.Cooldown)
	h.RateLimitCooldown = v.duration(raw.RateLimitCooldown, "health.rate_limit_cooldown", h.RateLimitCooldown)
	h.QuotaCooldown = v.duration(raw.QuotaCooldown, "health.quota_cooldown", h.QuotaCooldown)
	if h.Window < 100*time.Millisecond {
		v.at(p("window"), "health.window must be at least 100ms")
		h.Window = DefaultHealth().Window
	}
	if h.Cooldown <= 0 {
		v.at(p("cooldown"), "health.cooldown must be positive")
		h.Cooldown = DefaultHealth().Cooldown
	}
	return h
}

var fakeFailures = []string{provider.FakeServerError, provider.FakeOverloaded, provider.FakeRateLimit, provider.FakeTimeout}

func (v *validator) provider(name string, raw *rawProvider) *Provider {
	at := func(k string) []any { return []any{"providers", name, k} }
	if raw == nil {
		v.at([]any{"providers", name}, "provider %s is empty: give it a type", name)
		return nil
	}
	if !namePattern.MatchString(name) {
		v.at([]any{"providers", name}, "provider name %q: use letters, digits and . _ / -", name)
	}
	p := &Provider{Name: name, Type: provider.Kind(raw.Type), BaseURL: strings.TrimRight(raw.BaseURL, "/"), APIVersion: raw.APIVersion}
	known := false
	for _, k := range provider.Kinds {
		if p.Type == k {
			known = true
		}
	}
	if raw.Type == "" {
		v.at([]any{"providers", name}, "provider %s has no type (one of %s)", name, kindList())
		return nil
	}
	if !known {
		v.at(at("type"), "provider %s: unknown type %q (one of %s)", name, raw.Type, kindList())
		return nil
	}
	if raw.APIKey != "" {
		m := keyRefPattern.FindStringSubmatch(strings.TrimSpace(raw.APIKey))
		if m == nil {
			// Never repeat the value: it may be a real key.
			v.at(at("api_key"), "provider %s: api_key must say where the key is, as env(NAME) or secret(NAME), never hold the key itself", name)
		} else if m[1] == "env" {
			p.APIKey.Env = m[2]
		} else {
			p.APIKey.Secret = m[2]
		}
	} else if env := DefaultKeyEnv[p.Type]; env != "" {
		p.APIKey.Env = env
	}
	if p.BaseURL != "" {
		u, err := url.Parse(p.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.at(at("base_url"), "provider %s: base_url %q is not an http(s) URL", name, p.BaseURL)
		} else if u.User != nil || u.RawQuery != "" {
			v.at(at("base_url"), "provider %s: base_url must not carry credentials or a query; put the key in api_key", name)
			p.BaseURL = ""
		}
	}
	switch p.Type {
	case provider.Azure, provider.OpenAICompatible:
		if p.BaseURL == "" {
			v.at([]any{"providers", name}, "provider %s: type %s needs a base_url (the resource endpoint or server address)", name, p.Type)
		}
	}
	p.Timeout = v.duration(raw.Timeout, "providers."+name+".timeout", 0)
	fakeSet := raw.Latency != nil || raw.Jitter != nil || raw.FailureRate != nil || raw.Failure != "" || raw.Seed != nil || raw.RetryAfter != nil
	if p.Type != provider.Fake {
		if fakeSet {
			v.at([]any{"providers", name}, "provider %s: latency, jitter, failure_rate, failure, seed and retry_after are settings of type fake only", name)
		}
		return p
	}
	f := provider.FakeOptions{Name: name, Failure: provider.FakeServerError}
	f.Latency = v.duration(raw.Latency, "providers."+name+".latency", 0)
	f.Jitter = v.duration(raw.Jitter, "providers."+name+".jitter", 0)
	f.RetryAfter = v.duration(raw.RetryAfter, "providers."+name+".retry_after", time.Second)
	if raw.FailureRate != nil {
		if *raw.FailureRate < 0 || *raw.FailureRate > 1 {
			v.at(at("failure_rate"), "provider %s: failure_rate must be between 0 and 1", name)
		} else {
			f.FailureRate = *raw.FailureRate
		}
	}
	if raw.Failure != "" {
		ok := false
		for _, x := range fakeFailures {
			if raw.Failure == x {
				ok = true
			}
		}
		if !ok {
			v.at(at("failure"), "provider %s: failure %q is not one of %s", name, raw.Failure, strings.Join(fakeFailures, ", "))
		} else {
			f.Failure = raw.Failure
		}
	}
	if raw.Seed != nil {
		f.Seed = *raw.Seed
	}
	p.Fake = f
	return p
}

func kindList() string {
	s := make([]string, len(provider.Kinds))
	for i, k := range provider.Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func (v *validator) alias(name string, raw *rawAlias, cfg *Config) *Alias {
	base := []any{"models", name}
	at := func(k ...any) []any { return append(append([]any{}, base...), k...) }
	if raw == nil {
		v.at(base, "model %s is empty: give it deployments", name)
		return nil
	}
	if !namePattern.MatchString(name) {
		v.at(base, "model alias %q: use letters, digits and . _ / -", name)
	}
	a := &Alias{Name: name, Strategy: Strategy(raw.Strategy), Fallbacks: raw.Fallbacks, ContextFallback: raw.ContextFallback,
		OnRefusal: raw.OnRefusal, Template: raw.Template}
	if a.Strategy == "" {
		a.Strategy = Weighted
	} else {
		ok := false
		for _, s := range strategies {
			if a.Strategy == s {
				ok = true
			}
		}
		if !ok {
			names := make([]string, len(strategies))
			for i, s := range strategies {
				names[i] = string(s)
			}
			v.at(at("strategy"), "model %s: unknown strategy %q (one of %s)", name, raw.Strategy, strings.Join(names, ", "))
		}
	}
	a.MaxTiers = DefaultMaxTiers
	if raw.MaxTiers != nil {
		if *raw.MaxTiers < 1 || *raw.MaxTiers > 10 {
			v.at(at("max_tiers"), "model %s: max_tiers must be between 1 and 10", name)
		} else {
			a.MaxTiers = *raw.MaxTiers
		}
	}
	a.SchemaRetries = DefaultSchemaRetries
	if raw.SchemaRetries != nil {
		if *raw.SchemaRetries < 0 || *raw.SchemaRetries > 5 {
			v.at(at("schema_retries"), "model %s: schema_retries must be between 0 and 5", name)
		} else {
			a.SchemaRetries = *raw.SchemaRetries
		}
	}
	a.Timeout = v.duration(raw.Timeout, "models."+name+".timeout", DefaultTimeout)
	a.Deadline = v.duration(raw.Deadline, "models."+name+".deadline", DefaultDeadline)
	if a.Timeout <= 0 {
		v.at(at("timeout"), "model %s: timeout must be positive", name)
	}
	if a.Deadline <= 0 {
		v.at(at("deadline"), "model %s: deadline must be positive", name)
	}
	a.CacheTTL = v.duration(raw.CacheTTL, "models."+name+".cache_ttl", cfg.Cache.TTL)
	a.Retry = DefaultRetry()
	if r := raw.Retry; r != nil {
		if r.MaxAttempts != nil {
			a.Retry.MaxAttempts = *r.MaxAttempts
			if *r.MaxAttempts < 1 || *r.MaxAttempts > 20 {
				v.at(at("retry", "max_attempts"), "model %s: retry.max_attempts must be between 1 and 20 (rounds through the fallback chain)", name)
				a.Retry.MaxAttempts = DefaultRetry().MaxAttempts
			}
		}
		a.Retry.InitialInterval = v.duration(r.Initial, "models."+name+".retry.initial", a.Retry.InitialInterval)
		a.Retry.MaxInterval = v.duration(r.MaxInterval, "models."+name+".retry.max_interval", a.Retry.MaxInterval)
		if r.Coefficient != nil {
			a.Retry.BackoffCoefficient = *r.Coefficient
		}
		if r.Jitter != nil {
			a.Retry.Jitter = *r.Jitter
			if *r.Jitter == 0 {
				a.Retry.Jitter = -1
			}
		}
		if err := a.Retry.Validate(); err != nil {
			v.at(at("retry"), "model %s: %v", name, err)
			a.Retry = DefaultRetry()
		}
	}
	if len(raw.Deployments) == 0 {
		v.at(base, "model %s has no deployments", name)
	}
	seen := map[string]bool{}
	for i, rd := range raw.Deployments {
		dp := func(k string) []any { return at("deployments", i, k) }
		if rd == nil {
			v.at(at("deployments", i), "model %s: deployment %d is empty", name, i+1)
			continue
		}
		d := &Deployment{Name: rd.Name, Provider: rd.Provider, Model: rd.Model, Region: rd.Region, BaseURL: strings.TrimRight(rd.BaseURL, "/"),
			Tier: 1, Weight: 1, RPM: rd.RPM, TPM: rd.TPM, ContextWindow: rd.ContextWindow}
		p := cfg.Providers[rd.Provider]
		switch {
		case rd.Provider == "":
			v.at(at("deployments", i), "model %s: deployment %d names no provider", name, i+1)
		case p == nil:
			v.at(dp("provider"), "model %s: deployment %d: unknown provider %q (providers: %s)", name, i+1, rd.Provider, strings.Join(sortedKeys(cfg.Providers), ", "))
		}
		if d.Model == "" {
			if p != nil && p.Type == provider.Fake {
				d.Model = "fake"
			} else {
				v.at(at("deployments", i), "model %s: deployment %d has no model (the provider's model name; for Azure, the deployment name)", name, i+1)
			}
		}
		if d.Name == "" {
			d.Name = d.Provider + "/" + d.Model
		}
		if seen[d.Name] {
			v.at(at("deployments", i), "model %s: two deployments are named %s; give them distinct names (name: ...)", name, d.Name)
		}
		seen[d.Name] = true
		if rd.Tier != nil {
			if *rd.Tier < 1 || *rd.Tier > 10 {
				v.at(dp("tier"), "model %s: deployment %s: tier must be between 1 and 10", name, d.Name)
			} else {
				d.Tier = *rd.Tier
			}
		}
		if rd.Weight != nil {
			if *rd.Weight < 0 || *rd.Weight > 1_000_000 {
				v.at(dp("weight"), "model %s: deployment %s: weight must be between 0 and 1000000", name, d.Name)
			} else {
				d.Weight = *rd.Weight
			}
		}
		if d.RPM < 0 || d.TPM < 0 || d.ContextWindow < 0 {
			v.at(at("deployments", i), "model %s: deployment %s: rpm, tpm and context_window cannot be negative", name, d.Name)
		}
		if rd.Price != nil {
			if rd.Price.Input < 0 || rd.Price.Output < 0 {
				v.at(dp("price"), "model %s: deployment %s: prices cannot be negative", name, d.Name)
			}
			d.InputPrice, d.OutputPrice = rd.Price.Input, rd.Price.Output
		}
		if d.BaseURL != "" {
			u, err := url.Parse(d.BaseURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
				v.at(dp("base_url"), "model %s: deployment %s: base_url %q is not a plain http(s) URL", name, d.Name, d.BaseURL)
			}
		}
		d.Timeout = v.duration(rd.Timeout, "models."+name+".deployments["+strconv.Itoa(i)+"].timeout", 0)
		a.Deployments = append(a.Deployments, d)
	}
	return a
}
