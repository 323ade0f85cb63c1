// Package provider speaks the wire formats of the LLM providers starflow
// calls: OpenAI Chat Completions, Azure OpenAI deployments, any
// OpenAI-compatible server (Ollama, vLLM, llama.cpp), Anthropic Messages and
// Google Gemini generateContent, plus the built-in deterministic fake.
//
// A Provider turns one Request into one Response or one *Error. It never
// retries and never chooses between deployments: classification is its
// job (rate limit, quota, overload, context length, refusal, ...), routing
// and failover belong to package llm. API keys are passed to Complete at
// the moment of use, sent only in the header the provider expects, and
// scrubbed from every error message.
package provider

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Kind names a wire format.
type Kind string

// The provider kinds.
const (
	OpenAI           Kind = "openai"            // POST {base}/chat/completions, Authorization: Bearer
	Azure            Kind = "azure"             // POST {base}/openai/deployments/{model}/chat/completions?api-version=, api-key
	OpenAICompatible Kind = "openai_compatible" // OpenAI format at any base URL; key optional
	Anthropic        Kind = "anthropic"         // POST {base}/v1/messages, x-api-key, anthropic-version
	Gemini           Kind = "gemini"            // POST {base}/v1beta/models/{model}:generateContent, x-goog-api-key
	Fake             Kind = "fake"              // in-process, deterministic
)

// Kinds lists every kind, for messages.
var Kinds = []Kind{OpenAI, Azure, OpenAICompatible, Anthropic, Gemini, Fake}

// NeedsKey reports whether requests of this kind must carry an API key.
func (k Kind) NeedsKey() bool {
	switch k {
	case OpenAI, Azure, Anthropic, Gemini:
		return true
	}
	return false
}

// Message is one turn of a conversation. Role is "user" or "assistant"
// (system text goes in Request.System).
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one completion request in provider-neutral form.
type Request struct {
	Model       string // the provider's model name (for Azure: the deployment name)
	System      string
	Messages    []Message
	MaxTokens   int      // 0: the provider's default (Anthropic requires one: DefaultMaxTokens)
	Temperature *float64 // nil: the provider's default
	// Schema, if set, asks for a JSON answer matching this JSON Schema,
	// in the provider's native way where it has one.
	Schema map[string]any
	// IdempotencyKey is sent as the Idempotency-Key header by the
	// providers whose APIs accept one (OpenAI-format and Anthropic).
	IdempotencyKey string
}

// DefaultMaxTokens is sent to Anthropic when a request sets no limit (its
// API requires max_tokens).
const DefaultMaxTokens = 4096

// Usage counts tokens.
type Usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// RateLimit is what a response's headers say about the capacity left.
// The zero value means no rate-limit headers; within a present one,
// negative counts and zero durations mean unknown.
type RateLimit struct {
	Present           bool // some rate-limit header was present
	LimitRequests     int
	LimitTokens       int
	RemainingRequests int
	RemainingTokens   int
	ResetRequests     time.Duration // until the request budget refills
	ResetTokens       time.Duration // until the token budget refills
}

// Known reports whether any capacity information was present.
func (r RateLimit) Known() bool {
	return r.Present && (r.RemainingRequests >= 0 || r.RemainingTokens >= 0)
}

// NoRateLimit is the RateLimit of a response without rate-limit headers.
var NoRateLimit = RateLimit{LimitRequests: -1, LimitTokens: -1, RemainingRequests: -1, RemainingTokens: -1}

// Response is a successful completion.
type Response struct {
	Text         string
	Model        string // as the provider reported it
	Usage        Usage
	FinishReason string
	RequestID    string
	RateLimit    RateLimit
}

// Class is the kind of a failure, which decides what the router does.
type Class string

// The failure classes.
const (
	ClassRateLimit     Class = "rate_limit"     // 429, transient: wait RetryAfter or use another deployment
	ClassQuota         Class = "quota"          // quota or spend limit exhausted: no retry on this deployment
	ClassServer        Class = "server"         // 5xx, Anthropic 529 overloaded: fail over at once
	ClassTimeout       Class = "timeout"        // no answer in time
	ClassNetwork       Class = "network"        // connection refused, reset, DNS
	ClassAuth          Class = "auth"           // 401/403: bad or missing key
	ClassNotFound      Class = "not_found"      // 404: unknown model or deployment
	ClassBadRequest    Class = "bad_request"    // 400 and other 4xx: the request itself is wrong
	ClassContextLength Class = "context_length" // prompt longer than the model's context window
	ClassRefusal       Class = "refusal"        // the model declined (content policy)
)

// Transient reports whether another attempt (here or elsewhere) may succeed.
func (c Class) Transient() bool {
	switch c {
	case ClassRateLimit, ClassServer, ClassTimeout, ClassNetwork:
		return true
	}
	return false
}

// Error is a classified provider failure. Message never holds a key.
type Error struct {
	Class      Class
	Status     int    // HTTP status; 0 when no response arrived
	Code       string // the provider's own code or type: "rate_limit_error", "RESOURCE_EXHAUSTED", "insufficient_quota"
	Message    string
	RetryAfter time.Duration // the wait the provider asked for, if any
	RateLimit  RateLimit
	RequestID  string
	Text       string // for refusals: what the model said, if anything
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Status > 0 {
		fmt.Fprintf(&b, "HTTP %d ", e.Status)
	}
	b.WriteString(string(e.Class))
	if e.Code != "" && e.Code != string(e.Class) {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " [retry after %s]", e.RetryAfter)
	}
	return b.String()
}

// Provider sends requests in one wire format.
type Provider interface {
	// Complete sends req with the given API key ("" when none is needed).
	// Failures are *Error, except a cancelled ctx, which is returned as is.
	Complete(ctx context.Context, req *Request, key string) (*Response, error)
}

// keyPatterns match the shapes of well-known API keys, scrubbed even when
// the key itself is not known to Scrub (a provider echoing another key).
var keyPatterns = regexp.MustCompile(`sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}`)

// Scrub replaces each given secret value, and anything shaped like an
// OpenAI, Anthropic or Google API key, with "[redacted]". Providers echo
// keys in some error messages ("Incorrect API key provided: sk-...").
func Scrub(s string, secrets ...string) string {
	for _, k := range secrets {
		if len(k) >= 4 {
			s = strings.ReplaceAll(s, k, "[redacted]")
		}
	}
	return keyPatterns.ReplaceAllString(s, "[redacted]")
}

// truncate shortens provider messages for errors.
func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
