package provider_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/builtins/llm/provider"
	"github.com/starflow/starflow/internal/retryafter"
)

const key = "sk-test-0123456789abcdefXYZ"

func newPair(t *testing.T, f llmtest.Flavor) (*llmtest.Server, *provider.HTTP) {
	t.Helper()
	srv := llmtest.New(t, f, string(f), key)
	p, err := provider.NewHTTP(provider.Kind(f), srv.URL(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, p
}

var flavors = []llmtest.Flavor{llmtest.OpenAI, llmtest.Azure, llmtest.Compatible, llmtest.Anthropic, llmtest.Gemini}

func TestSuccessEveryFlavor(t *testing.T) {
	temp := 0.2
	for _, f := range flavors {
		t.Run(string(f), func(t *testing.T) {
			srv, p := newPair(t, f)
			srv.Script(llmtest.Reply{Text: "hello there", InputTokens: 11, OutputTokens: 3})
			res, err := p.Complete(context.Background(), &provider.Request{
				Model: "m-1", System: "be brief", Messages: []provider.Message{{Role: "user", Content: "hi"}},
				MaxTokens: 50, Temperature: &temp, IdempotencyKey: "run-1/3",
			}, key)
			if err != nil {
				t.Fatal(err)
			}
			if res.Text != "hello there" || res.Usage.InputTokens != 11 || res.Usage.OutputTokens != 3 {
				t.Fatalf("response %+v", res)
			}
			r := srv.Requests()[0]
			if r.Key != key || r.Model != "m-1" || r.System != "be brief" || r.LastUser() != "hi" {
				t.Fatalf("server saw key=%q model=%q system=%q user=%q", r.Key, r.Model, r.System, r.LastUser())
			}
			wantIdem := "run-1/3"
			if f == llmtest.Gemini {
				wantIdem = "" // Gemini takes no idempotency header
			}
			if r.IdempotencyKey != wantIdem {
				t.Fatalf("Idempotency-Key %q, want %q", r.IdempotencyKey, wantIdem)
			}
			switch f {
			case llmtest.OpenAI:
				if r.Body["max_completion_tokens"] != float64(50) || r.Body["max_tokens"] != nil {
					t.Fatalf("OpenAI body %v: want max_completion_tokens", r.Body)
				}
			case llmtest.Azure:
				if r.Query.Get("api-version") != provider.AzureAPIVersion || r.Header.Get("api-key") != key || r.Header.Get("Authorization") != "" {
					t.Fatalf("Azure request query %v headers %v", r.Query, r.Header)
				}
			case llmtest.Anthropic:
				if r.Header.Get("anthropic-version") != provider.AnthropicVersion || r.Body["max_tokens"] != float64(50) {
					t.Fatalf("Anthropic request %v %v", r.Header, r.Body)
				}
			case llmtest.Gemini:
				gc, _ := r.Body["generationConfig"].(map[string]any)
				if gc["maxOutputTokens"] != float64(50) || gc["temperature"] != 0.2 {
					t.Fatalf("Gemini generationConfig %v", gc)
				}
			}
		})
	}
}

func TestFaultClassesEveryFlavor(t *testing.T) {
	cases := []struct {
		fault llmtest.Fault
		class provider.Class
	}{
		{llmtest.ServerError, provider.ClassServer},
		{llmtest.Unavailable, provider.ClassServer},
		{llmtest.Overloaded, provider.ClassServer},
		{llmtest.RateLimit, provider.ClassRateLimit},
		{llmtest.Quota, provider.ClassQuota},
		{llmtest.Unauthorized, provider.ClassAuth},
		{llmtest.NotFound, provider.ClassNotFound},
		{llmtest.BadRequest, provider.ClassBadRequest},
		{llmtest.ContextLength, provider.ClassContextLength},
		{llmtest.Refusal, provider.ClassRefusal},
	}
	for _, f := range flavors {
		for _, c := range cases {
			if f == llmtest.Azure && c.fault == llmtest.Quota {
				continue // Azure reports quota as a plain 429
			}
			t.Run(string(f)+"/"+string(c.fault), func(t *testing.T) {
				srv, p := newPair(t, f)
				srv.Script(llmtest.Reply{Fault: c.fault, RetryAfter: 1500 * time.Millisecond})
				_, err := p.Complete(context.Background(), &provider.Request{Model: "m", Messages: []provider.Message{{Role: "user", Content: "x"}}}, key)
				var pe *provider.Error
				if !errors.As(err, &pe) {
					t.Fatalf("err %v (%T), want *provider.Error", err, err)
				}
				if pe.Class != c.class {
					t.Fatalf("class %s, want %s (error: %v)", pe.Class, c.class, pe)
				}
				if strings.Contains(pe.Error(), key) {
					t.Fatalf("key leaked in %q", pe.Error())
				}
				if c.fault == llmtest.RateLimit && pe.RetryAfter != 1500*time.Millisecond && !(f == llmtest.Anthropic && pe.RetryAfter == 2*time.Second) {
					t.Fatalf("retry after %s, want 1.5s", pe.RetryAfter)
				}
				if f == llmtest.Anthropic && c.fault == llmtest.Overloaded && (pe.Status != 529 || pe.Code != "overloaded_error") {
					t.Fatalf("Anthropic overload: status %d code %q", pe.Status, pe.Code)
				}
			})
		}
	}
}

func TestWrongKeyIsAuthAndScrubbed(t *testing.T) {
	for _, f := range []llmtest.Flavor{llmtest.OpenAI, llmtest.Azure, llmtest.Anthropic, llmtest.Gemini} {
		t.Run(string(f), func(t *testing.T) {
			_, p := newPair(t, f)
			wrong := "sk-wrong-9876543210fedcbaQQQ"
			_, err := p.Complete(context.Background(), &provider.Request{Model: "m", Messages: []provider.Message{{Role: "user", Content: "x"}}}, wrong)
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Class != provider.ClassAuth {
				t.Fatalf("err %v, want auth", err)
			}
			if strings.Contains(pe.Error(), wrong) || strings.Contains(pe.Error(), "9876543210") {
				t.Fatalf("key leaked: %q", pe.Error())
			}
		})
	}
}

func TestCapacityHeaders(t *testing.T) {
	for _, f := range []llmtest.Flavor{llmtest.OpenAI, llmtest.Anthropic} {
		t.Run(string(f), func(t *testing.T) {
			srv, p := newPair(t, f)
			srv.SetHeader(llmtest.CapacityHeaders(f, 0, 1234, 20*time.Second))
			res, err := p.Complete(context.Background(), &provider.Request{Model: "m", Messages: []provider.Message{{Role: "user", Content: "x"}}}, key)
			if err != nil {
				t.Fatal(err)
			}
			rl := res.RateLimit
			if rl.RemainingRequests != 0 || rl.RemainingTokens != 1234 || rl.ResetRequests <= 10*time.Second || rl.ResetRequests > 21*time.Second {
				t.Fatalf("rate limit %+v", rl)
			}
		})
	}
}

func TestGeminiRetryDelayAndDailyQuota(t *testing.T) {
	srv, p := newPair(t, llmtest.Gemini)
	srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 22 * time.Second}, llmtest.Reply{Fault: llmtest.Quota, RetryAfter: time.Hour})
	req := &provider.Request{Model: "gemini-x", Messages: []provider.Message{{Role: "user", Content: "x"}}}
	_, err := p.Complete(context.Background(), req, key)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassRateLimit || pe.RetryAfter != 22*time.Second || pe.Code != "RESOURCE_EXHAUSTED" {
		t.Fatalf("first: %+v", err)
	}
	_, err = p.Complete(context.Background(), req, key)
	if !errors.As(err, &pe) || pe.Class != provider.ClassQuota {
		t.Fatalf("second: %+v, want quota (per-day QuotaFailure)", err)
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	srv, p := newPair(t, llmtest.OpenAI)
	srv.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Hang} })
	req := &provider.Request{Model: "m", Messages: []provider.Message{{Role: "user", Content: "x"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := p.Complete(ctx, req, key)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassTimeout {
		t.Fatalf("err %v, want timeout", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel2() }()
	_, err = p.Complete(ctx2, req, key)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled unclassified", err)
	}
}

func TestConnectionRefusedIsNetwork(t *testing.T) {
	p, _ := provider.NewHTTP(provider.OpenAICompatible, "http://127.0.0.1:1/v1", "", &http.Client{})
	_, err := p.Complete(context.Background(), &provider.Request{Model: "m", Messages: []provider.Message{{Role: "user", Content: "x"}}}, "")
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassNetwork {
		t.Fatalf("err %v, want network", err)
	}
}

func TestSchemaRequestShapes(t *testing.T) {
	schema := map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "string"}}}
	for _, f := range []llmtest.Flavor{llmtest.OpenAI, llmtest.Anthropic, llmtest.Gemini} {
		t.Run(string(f), func(t *testing.T) {
			srv, p := newPair(t, f)
			srv.Script(llmtest.Reply{Text: `{"a":"b"}`})
			if _, err := p.Complete(context.Background(), &provider.Request{Model: "m", Schema: schema, Messages: []provider.Message{{Role: "user", Content: "x"}}}, key); err != nil {
				t.Fatal(err)
			}
			r := srv.Requests()[0]
			switch f {
			case llmtest.Anthropic:
				if !strings.Contains(r.System, "JSON Schema") {
					t.Fatalf("Anthropic system %q should carry the schema", r.System)
				}
			default:
				if !r.JSONMode {
					t.Fatalf("%s request did not ask for JSON: %v", f, r.Body)
				}
			}
		})
	}
}

func TestFakeIsDeterministic(t *testing.T) {
	req := &provider.Request{Model: "fake", Messages: []provider.Message{{Role: "user", Content: "Summarise: the deploy went fine"}}}
	a, b := provider.FakeText(req), provider.FakeText(req)
	if a != b || !strings.Contains(a, "the deploy went fine") {
		t.Fatalf("fake text %q / %q", a, b)
	}
	seq := func() []bool {
		f := provider.NewFake(provider.FakeOptions{Name: "x", Seed: 42, FailureRate: 0.5})
		var out []bool
		for i := 0; i < 40; i++ {
			_, err := f.Complete(context.Background(), req, "")
			out = append(out, err != nil)
		}
		return out
	}
	s1, s2 := seq(), seq()
	fails := 0
	for i := range s1 {
		if s1[i] != s2[i] {
			t.Fatalf("failure sequences differ at %d", i)
		}
		if s1[i] {
			fails++
		}
	}
	if fails < 8 || fails > 32 {
		t.Fatalf("%d of 40 failed at rate 0.5", fails)
	}
}

func TestScrub(t *testing.T) {
	s := provider.Scrub("Incorrect API key provided: sk-proj-abcdefghijklmnop and mykey123 and AIzaSyA1234567890abcdefghijkl", "mykey123")
	for _, leak := range []string{"abcdefghijklmnop", "mykey123", "AIzaSy"} {
		if strings.Contains(s, leak) {
			t.Fatalf("%q survived scrubbing: %s", leak, s)
		}
	}
}

// Retry-After is read by internal/retryafter, as the http builtin reads
// it: an unusable retry-after-ms gives way to Retry-After, absurd waits
// are capped, NaN and negative values are ignored.
func TestRetryAfterHeaders(t *testing.T) {
	for _, c := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{map[string]string{"Retry-After": "1"}, time.Second},
		{map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{map[string]string{"Retry-After-Ms": "+Inf", "Retry-After": "2"}, 2 * time.Second},
		{map[string]string{"Retry-After": "99999999999999"}, retryafter.Max},
		{map[string]string{"Retry-After-Ms": "1e300"}, retryafter.Max},
		{map[string]string{"Retry-After": "NaN"}, 0},
		{map[string]string{"Retry-After": "-5"}, 0},
	} {
		srv, p := newPair(t, llmtest.OpenAI)
		h := http.Header{}
		for k, v := range c.h {
			h.Set(k, v)
		}
		srv.Script(llmtest.Reply{Fault: llmtest.RateLimit, Header: h})
		_, err := p.Complete(context.Background(), &provider.Request{Model: "m", Messages: []provider.Message{{Role: "user", Content: "hi"}}}, key)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != provider.ClassRateLimit {
			t.Fatalf("%v: err %v", c.h, err)
		}
		if pe.RetryAfter != c.want {
			t.Errorf("%v: RetryAfter %v, want %v", c.h, pe.RetryAfter, c.want)
		}
	}
}
