// Package chaos owns starflow's fault injection: profiles that say which
// faults to inject into the http and llm builtins (HTTP 429 with a wait,
// 500, 502, 503, 504, 529, timeouts, connection resets, added latency and
// slow bodies), by builtin, provider or host, at given rates; and the
// Injector that applies them, deterministically, from a seed.
//
// An Injector sits below the builtins' own retry, failover and budget
// logic, where a real network fault would occur: it wraps the
// http.RoundTripper of the http builtin (builtins/http Options.WrapTransport)
// and the *http.Client of the llm builtin (builtins/llm Options.HTTPClient),
// and wraps the llm providers (Options.WrapProvider) so that it knows which
// configured provider a request is for and can fail the in-process fake
// provider too. Injected error responses are those the targeted service
// sends: for llm providers the status, the provider's own error body and
// its headers (retry-after, retry-after-ms, RetryInfo.retryDelay, rate-limit
// headers), so that the builtins classify them as they would real ones.
//
// Determinism: the n-th request to a target (a host for http, a provider
// and host for llm) gets the same faults under the same seed, whatever
// happens on other targets. The Injector keeps an event log of the faults
// it injected; Sequence, Diff and Summary.Fingerprint compare two runs'
// fault sequences. Tally counts the retries, fallbacks and degraded
// answers a run's journal shows.
//
// The profile format, the inline form of the --chaos flag and the exact
// wire behaviour of each fault are written in spec/chaos.md.
package chaos
