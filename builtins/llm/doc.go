// Package llm owns starflow's llm() builtin: one journaled call that keeps
// answering when a provider rate-limits, errors, slows down or goes dark.
//
// It owns, for every call: routing among the deployments of a model alias
// (weighted, round-robin, latency-based, priority, capacity-aware), tiers
// and bounded fallback chains, per-deployment circuit breakers
// (sony/gobreaker, rolling window), cooldowns after rate limits and
// exhausted quotas, the error policy by class (wait for a 429, fail over
// on 5xx/529/timeouts, fail fast on 400/401/403/404, reroute on context
// length, safe answer or error on refusal), one deadline over all of it,
// structured output validated against a JSON Schema with a repair loop,
// and graceful degradation (a cached answer, then a template). It also
// owns the configuration (YAML, see spec/config.md) and the environment
// defaults (DefaultConfig).
//
// It does not own the journal, nor the waiting: the runtime records each
// llm() call once and replays it, so a replay never calls a provider, and
// the runtime waits between a call's rounds (runtime.Retry), in process or
// with the run suspended, on its own clock. Routing and health state is
// in memory, per process. The wire formats live in package
// provider; loopback servers that speak them, for tests, in package
// llmtest.
//
// Wiring:
//
//	cfg, err := llm.LoadConfig(path) // or llm.DefaultConfig(os.Getenv)
//	var rt *runtime.Runtime
//	mod, err := llm.New(llm.Options{Config: cfg, KV: store, Logger: log,
//		Now: func() time.Time { return rt.Now() }}) // one clock with the runtime
//	rt, err = runtime.New(store, runtime.Options{
//		Builtins: append(builtins.Standard(), mod.Builtins()...), ...})
//
// The semantics scripts rely on are written in spec/llm.md.
package llm
