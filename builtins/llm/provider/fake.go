package provider

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

// The fake provider answers in-process, deterministically: the text is
// derived from a hash of the request, so the same request always gets the
// same answer. Latency and failures are drawn from a sequence seeded by
// FakeOptions.Seed and the provider's name, so a run of the same calls
// fails the same way each time. It needs no key and no network: the
// quickstart and the demos use it.

// Fake failure modes (FakeOptions.Failure).
const (
	FakeServerError = "server_error" // HTTP 503
	FakeOverloaded  = "overloaded"   // HTTP 529 overloaded_error
	FakeRateLimit   = "rate_limit"   // HTTP 429 with a retry-after of FakeOptions.RetryAfter
	FakeTimeout     = "timeout"      // no answer until the caller gives up
)

// FakeRefuseMarker in the last user message makes the fake refuse, so
// demos can show refusal handling.
const FakeRefuseMarker = "[[refuse]]"

// FakeOptions configure a fake provider.
type FakeOptions struct {
	Name        string        // mixed into the seed, so two fakes fail independently
	Seed        uint64        // the failure and jitter sequence's seed
	Latency     time.Duration // added to every call
	Jitter      time.Duration // the latency varies by up to ± this much
	FailureRate float64       // fraction of calls that fail, 0 to 1
	Failure     string        // how they fail; default FakeServerError
	RetryAfter  time.Duration // the wait a FakeRateLimit failure asks for; default 1s
}

// FakeProvider is the built-in fake. It is safe for concurrent use.
//
// Whether a request fails, and its latency jitter, are drawn from a stream
// seeded by Seed and Name and, when the request carries an idempotency
// key, by that key and the number of requests seen with it. A call then
// meets the same failures in every process: a run resumed after a crash
// sees what it would have seen without the crash.
type FakeProvider struct {
	opts  FakeOptions
	mu    sync.Mutex
	rng   *rand.Rand
	n     int
	tries map[string]int // requests seen per idempotency key
	seed2 uint64
}

// NewFake returns a fake provider.
func NewFake(o FakeOptions) *FakeProvider {
	h := fnv.New64a()
	h.Write([]byte(o.Name))
	if o.Failure == "" {
		o.Failure = FakeServerError
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	return &FakeProvider{opts: o, rng: rand.New(rand.NewPCG(o.Seed, h.Sum64())), tries: map[string]int{}, seed2: h.Sum64()}
}

// draws returns the random stream for one request.
func (f *FakeProvider) draws(req *Request) *rand.Rand {
	if req.IdempotencyKey == "" {
		return f.rng
	}
	f.tries[req.IdempotencyKey]++
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d", req.IdempotencyKey, f.tries[req.IdempotencyKey])
	return rand.New(rand.NewPCG(f.opts.Seed^h.Sum64(), f.seed2))
}

// Calls returns how many requests the fake has received.
func (f *FakeProvider) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// Complete implements Provider.
func (f *FakeProvider) Complete(ctx context.Context, req *Request, _ string) (*Response, error) {
	f.mu.Lock()
	f.n++
	rng := f.draws(req)
	fail := f.opts.FailureRate > 0 && rng.Float64() < f.opts.FailureRate
	delay := f.opts.Latency
	if f.opts.Jitter > 0 {
		delay += time.Duration((2*rng.Float64() - 1) * float64(f.opts.Jitter))
	}
	f.mu.Unlock()

	if fail && f.opts.Failure == FakeTimeout {
		<-ctx.Done()
		return nil, ctxError(ctx)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctxError(ctx)
		}
	}
	if fail {
		rate := fmt.Sprintf("failure_rate %g", f.opts.FailureRate)
		switch f.opts.Failure {
		case FakeOverloaded:
			return nil, &Error{Class: ClassServer, Status: 529, Code: "overloaded_error", Message: "Overloaded (fake provider, " + rate + ")"}
		case FakeRateLimit:
			return nil, &Error{Class: ClassRateLimit, Status: 429, Code: "rate_limit_exceeded", Message: "Rate limit reached (fake provider, " + rate + ")", RetryAfter: f.opts.RetryAfter}
		default:
			return nil, &Error{Class: ClassServer, Status: 503, Code: "unavailable", Message: "The server is temporarily unavailable (fake provider, " + rate + ")"}
		}
	}
	last := ""
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = req.Messages[i].Content
			break
		}
	}
	if strings.Contains(last, FakeRefuseMarker) {
		return nil, &Error{Class: ClassRefusal, Status: 200, Code: "refusal", Message: "the fake model declined to answer", Text: "I can't help with that."}
	}
	text := FakeText(req)
	in := 0
	for _, m := range req.Messages {
		in += EstimateTokens(m.Content)
	}
	in += EstimateTokens(req.System)
	return &Response{
		Text:         text,
		Model:        req.Model,
		Usage:        Usage{InputTokens: in, OutputTokens: EstimateTokens(text)},
		FinishReason: "stop",
		RequestID:    "fake-" + fmt.Sprintf("%x", requestHash(req)[:6]),
		RateLimit:    NoRateLimit,
	}, nil
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Class: ClassTimeout, Message: "no response in time (fake provider)"}
	}
	return ctx.Err()
}

// EstimateTokens is a rough token count: a quarter of the characters.
func EstimateTokens(s string) int { return (len(s) + 3) / 4 }

func requestHash(req *Request) []byte {
	h := sha256.New()
	h.Write([]byte(req.Model))
	h.Write([]byte{0})
	h.Write([]byte(req.System))
	for _, m := range req.Messages {
		h.Write([]byte{0})
		h.Write([]byte(m.Role))
		h.Write([]byte{0})
		h.Write([]byte(m.Content))
	}
	if req.Schema != nil {
		b, _ := json.Marshal(req.Schema)
		h.Write(b)
	}
	return h.Sum(nil)
}

var fakeLeads = []string{"In short", "Briefly", "Overall", "To sum up", "In summary", "Put simply"}

// FakeText is the fake's answer to req: a short summary-like sentence
// drawn from the last user message, or, when req.Schema is set, JSON that
// is valid for simple schemas (types, properties, required, enum, const,
// minimum/maximum, minLength/maxLength, minItems/maxItems).
func FakeText(req *Request) string {
	sum := requestHash(req)
	last := ""
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = req.Messages[i].Content
			break
		}
	}
	words := summaryWords(last, 12)
	if req.Schema != nil {
		g := &fakeGen{seed: binary.BigEndian.Uint64(sum[:8]), words: words}
		b, _ := json.Marshal(g.value(req.Schema, 0))
		return string(b)
	}
	lead := fakeLeads[int(sum[0])%len(fakeLeads)]
	body := strings.Join(words, " ")
	if body == "" {
		body = "nothing to summarise"
	}
	return fmt.Sprintf("%s: %s (fake answer %x)", lead, body, sum[:4])
}

// summaryWords returns up to n words of s, skipping a leading instruction
// ("Summarise:", "Text:").
func summaryWords(s string, n int) []string {
	f := strings.Fields(s)
	for len(f) > 1 && strings.HasSuffix(f[0], ":") {
		f = f[1:]
	}
	if i := indexSuffix(f, ":"); i >= 0 && i < len(f)-1 && i < 8 {
		f = f[i+1:]
	}
	if len(f) > n {
		f = f[:n]
	}
	return f
}

func indexSuffix(f []string, suf string) int {
	for i, w := range f {
		if strings.HasSuffix(w, suf) {
			return i
		}
	}
	return -1
}

// fakeGen produces a deterministic value for a JSON Schema.
type fakeGen struct {
	seed  uint64
	n     uint64
	words []string
}

func (g *fakeGen) next() uint64 {
	g.n++
	x := g.seed + g.n*0x9E3779B97F4A7C15
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	return x ^ (x >> 31)
}

func num(m map[string]any, k string) (float64, bool) {
	switch v := m[k].(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

func (g *fakeGen) value(s map[string]any, depth int) any {
	if depth > 8 {
		return nil
	}
	if c, ok := s["const"]; ok {
		return c
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[g.next()%uint64(len(e))]
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if alts, ok := s[k].([]any); ok && len(alts) > 0 {
			if sub, ok := alts[0].(map[string]any); ok {
				return g.value(sub, depth+1)
			}
		}
	}
	typ := ""
	switch t := s["type"].(type) {
	case string:
		typ = t
	case []any:
		for _, x := range t {
			if xs, _ := x.(string); xs != "" && xs != "null" {
				typ = xs
				break
			}
		}
	}
	if typ == "" {
		if _, ok := s["properties"]; ok {
			typ = "object"
		} else if _, ok := s["items"]; ok {
			typ = "array"
		} else {
			typ = "string"
		}
	}
	switch typ {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		names := make([]string, 0, len(props))
		for k := range props {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			sub, _ := props[k].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
			}
			out[k] = g.value(sub, depth+1)
		}
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if k, _ := r.(string); k != "" {
					if _, have := out[k]; !have {
						out[k] = g.text(0, 0)
					}
				}
			}
		}
		return out
	case "array":
		items, _ := s["items"].(map[string]any)
		if items == nil {
			items = map[string]any{"type": "string"}
		}
		n := 2.0
		if lo, ok := num(s, "minItems"); ok && lo > n {
			n = lo
		}
		if hi, ok := num(s, "maxItems"); ok && hi < n {
			n = hi
		}
		out := make([]any, 0, int(n))
		for i := 0; i < int(n); i++ {
			out = append(out, g.value(items, depth+1))
		}
		return out
	case "integer", "number":
		lo, hasLo := num(s, "minimum")
		hi, hasHi := num(s, "maximum")
		if !hasLo {
			lo = 0
		}
		if !hasHi {
			hi = lo + 100
		}
		if hi < lo {
			hi = lo
		}
		span := uint64(hi-lo) + 1
		v := lo + float64(g.next()%span)
		if typ == "number" && v < hi {
			v += float64(g.next()%100) / 100
		}
		return v
	case "boolean":
		return g.next()%2 == 0
	case "null":
		return nil
	}
	lo, _ := num(s, "minLength")
	hi, hasHi := num(s, "maxLength")
	if !hasHi {
		hi = 0
	}
	return g.text(int(lo), int(hi))
}

func (g *fakeGen) text(minLen, maxLen int) string {
	s := strings.Join(g.words, " ")
	if s == "" {
		s = "fake"
	}
	if len(g.words) > 6 {
		start := int(g.next() % uint64(len(g.words)-5))
		s = strings.Join(g.words[start:start+6], " ")
	}
	for len(s) < minLen {
		s += " fake"
	}
	if maxLen > 0 && len(s) > maxLen {
		s = s[:maxLen]
	}
	return s
}
