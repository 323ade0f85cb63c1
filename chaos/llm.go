package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/starflow/starflow/builtins/llm/provider"
)

// tagKey carries an *llmTag in a provider request's context, from
// WrapLLMProvider down to the LLMClient transport.
type tagKey struct{}

type llmTag struct {
	name string // the provider's name in the configuration
	kind string // its type
	key  string // the request's idempotency key
}

// WrapLLMProvider wraps one of the llm builtin's provider clients; its
// signature fits builtins/llm Options.WrapProvider. For HTTP providers it
// only labels each request with the provider's name and type, for the
// LLMClient transport to select and render faults; the fake provider,
// which has no HTTP, gets its faults here, as the *provider.Error values
// the fake itself returns for them.
func (i *Injector) WrapLLMProvider(name string, kind provider.Kind, p provider.Provider) provider.Provider {
	if i == nil || p == nil {
		return p
	}
	return &llmProvider{inj: i, name: name, kind: kind, inner: p}
}

type llmProvider struct {
	inj   *Injector
	name  string
	kind  provider.Kind
	inner provider.Provider
}

// Complete implements provider.Provider.
func (p *llmProvider) Complete(ctx context.Context, req *provider.Request, key string) (*provider.Response, error) {
	if p.kind != provider.Fake {
		ctx = context.WithValue(ctx, tagKey{}, &llmTag{name: p.name, kind: string(p.kind), key: req.IdempotencyKey})
		return p.inner.Complete(ctx, req, key)
	}
	ri := &reqInfo{builtin: LLM, provider: p.name, kind: string(provider.Fake), method: http.MethodPost, key: req.IdempotencyKey}
	d := p.inj.decide(ri)
	if d.none() {
		return p.inner.Complete(ctx, req, key)
	}
	if d.delay > 0 {
		if sleep(ctx, d.delay) != nil {
			return nil, fakeCtxError(ctx)
		}
	}
	if r := d.term; r != nil {
		if r.AfterSend {
			if _, err := p.inner.Complete(ctx, req, key); err != nil {
				return nil, err
			}
		}
		switch r.Fault {
		case Timeout:
			if r.Hang <= 0 {
				<-ctx.Done()
				return nil, fakeCtxError(ctx)
			}
			if sleep(ctx, r.Hang) != nil {
				return nil, fakeCtxError(ctx)
			}
			return nil, &provider.Error{Class: provider.ClassTimeout, Message: "read tcp: i/o timeout (injected by chaos)", RateLimit: provider.NoRateLimit}
		case Reset:
			return nil, &provider.Error{Class: provider.ClassNetwork, Message: "read tcp: read: connection reset by peer (injected by chaos)", RateLimit: provider.NoRateLimit}
		}
		return nil, fakeStatusError(r, d.sent)
	}
	resp, err := p.inner.Complete(ctx, req, key)
	if err != nil || d.slow == nil {
		return resp, err
	}
	// The answer arrives as slowly as its text would trickle.
	chunks := (len(resp.Text) + d.slow.Bytes - 1) / d.slow.Bytes
	if sleep(ctx, time.Duration(chunks)*d.slow.Every) != nil {
		return nil, fakeCtxError(ctx)
	}
	return resp, nil
}

// fakeCtxError is the fake provider's failure when the caller's context
// ends: a timeout when its deadline passed, else the context's error.
func fakeCtxError(ctx context.Context) error {
	if ctx.Err() == context.DeadlineExceeded {
		return &provider.Error{Class: provider.ClassTimeout, Message: "no response in time (injected by chaos)", RateLimit: provider.NoRateLimit}
	}
	return ctx.Err()
}

// fakeStatusError is an injected status as the fake provider reports one.
func fakeStatusError(r *Rule, status int) *provider.Error {
	e := &provider.Error{Status: status, RetryAfter: r.RetryAfter, RateLimit: provider.NoRateLimit}
	switch status {
	case 429:
		e.Class, e.Code, e.Message = provider.ClassRateLimit, "rate_limit_exceeded", "Rate limit reached (injected by chaos)"
	case 504:
		e.Class, e.Code, e.Message = provider.ClassTimeout, "gateway_timeout", "Gateway timeout (injected by chaos)"
	case 529:
		e.Class, e.Code, e.Message = provider.ClassServer, "overloaded_error", "Overloaded (injected by chaos)"
	default:
		e.Class, e.Code, e.Message = provider.ClassServer, strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")),
			http.StatusText(status)+" (injected by chaos)"
	}
	return e
}

// wireStatus is the status sent for a requested one: 529 exists only at
// Anthropic (and the fake, which mimics it); other llm providers signal
// overload with 503.
func wireStatus(ri *reqInfo, status int) int {
	if ri.builtin == LLM && status == 529 && ri.kind != string(provider.Anthropic) && ri.kind != string(provider.Fake) {
		return 503
	}
	return status
}

// inferKind guesses a provider type from a request that WrapLLMProvider
// did not label.
func inferKind(req *http.Request) string {
	p := req.URL.Path
	switch {
	case strings.Contains(p, "/openai/deployments/"):
		return string(provider.Azure)
	case req.Header.Get("anthropic-version") != "" || strings.HasSuffix(p, "/v1/messages"):
		return string(provider.Anthropic)
	case strings.Contains(p, ":generateContent") || req.Header.Get("x-goog-api-key") != "":
		return string(provider.Gemini)
	case strings.EqualFold(req.URL.Hostname(), "api.openai.com"):
		return string(provider.OpenAI)
	}
	return string(provider.OpenAICompatible)
}

// requestModel reads the model a request is for, for error messages: from
// the path (Azure's deployment, Gemini's model) or the JSON body, read from
// a copy (GetBody) when the request has one, else from the body itself,
// which is then consumed.
func requestModel(req *http.Request) string {
	p := req.URL.Path
	if _, rest, ok := strings.Cut(p, "/openai/deployments/"); ok {
		d, _, _ := strings.Cut(rest, "/")
		return d
	}
	if i := strings.Index(p, "/models/"); i >= 0 && strings.HasSuffix(p, ":generateContent") {
		return strings.TrimSuffix(p[i+len("/models/"):], ":generateContent")
	}
	body := req.Body
	if req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			body = b
			defer b.Close()
		}
	}
	if body == nil {
		return ""
	}
	var b struct {
		Model string `json:"model"`
	}
	_ = json.NewDecoder(io.LimitReader(body, 1<<20)).Decode(&b)
	return b.Model
}

// llmResponse renders an injected status in the provider's wire format:
// its status, error body and headers.
func llmResponse(req *http.Request, ri *reqInfo, r *Rule, status int, model string, n int) *http.Response {
	h := http.Header{}
	id := fmt.Sprintf("chaos%06d", n)
	wait := r.RetryAfter
	var body string
	switch provider.Kind(ri.kind) {
	case provider.Anthropic:
		h.Set("request-id", "req_"+id)
		if wait > 0 {
			setRetryAfter(h, wait, false) // whole seconds only
		}
		typ, msg := "api_error", "Internal server error"
		switch status {
		case 429:
			typ, msg = "rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
			h.Set("anthropic-ratelimit-requests-limit", "50")
			h.Set("anthropic-ratelimit-requests-remaining", "0")
			h.Set("anthropic-ratelimit-requests-reset", time.Now().Add(wait).UTC().Format(time.RFC3339))
		case 502:
			return htmlResponse(req, status, h, cloudflarePage(status))
		case 503:
			msg = "Service unavailable"
		case 504:
			typ, msg = "timeout_error", "Request timed out"
		case 529:
			typ, msg = "overloaded_error", "Overloaded"
		}
		body = jsonText(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": "req_" + id})
	case provider.Gemini:
		code, st, msg := 500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
		var details []any
		switch status {
		case 429:
			code, st, msg = 429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
			details = []any{
				map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{
					"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
					"quotaDimensions": map[string]any{"location": "global", "model": model}, "quotaValue": "10",
				}}},
				map[string]any{"@type": "type.googleapis.com/google.rpc.Help", "links": []any{map[string]any{
					"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
				}}},
			}
		case 502:
			return htmlResponse(req, status, h, googlePage(status))
		case 503:
			code, st, msg = 503, "UNAVAILABLE", "The model is overloaded. Please try again later."
		case 504:
			code, st, msg = 504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."
		}
		if wait > 0 {
			// Gemini sends no retry-after header: the wait is in RetryInfo.
			details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": protoDuration(wait)})
		}
		e := map[string]any{"code": code, "message": msg, "status": st}
		if details != nil {
			e["details"] = details
		}
		body = jsonText(map[string]any{"error": e})
		h.Set("Content-Type", "application/json; charset=UTF-8")
		return response(req, status, h, body)
	case provider.Azure:
		h.Set("apim-request-id", id)
		setRetryAfter(h, wait, false)
		if wait > 0 {
			h.Set("Retry-After-Ms", strconv.FormatInt(wait.Milliseconds(), 10))
		}
		var code, msg string
		switch status {
		case 429:
			secs := int(math.Ceil(wait.Seconds()))
			code = "429"
			msg = fmt.Sprintf("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version %s have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after %d seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.", req.URL.Query().Get("api-version"), secs)
		case 500:
			code, msg = "InternalServerError", "The service is temporarily unable to process your request. Please try again later."
		case 502, 504:
			return htmlResponse(req, status, h, azureGatewayPage(status))
		default: // 503
			code, msg = "ServiceUnavailable", "The service is temporarily unavailable. Please try again later."
		}
		body = jsonText(map[string]any{"error": map[string]any{"code": code, "message": msg}})
	default: // OpenAI and OpenAI-compatible servers
		h.Set("x-request-id", "req_"+id)
		setRetryAfter(h, wait, false)
		if wait > 0 {
			h.Set("Retry-After-Ms", strconv.FormatInt(wait.Milliseconds(), 10))
		}
		var typ, msg string
		var code any
		switch status {
		case 429:
			typ, code = "requests", "rate_limit_exceeded"
			for_ := ""
			if model != "" {
				for_ = " for " + model
			}
			msg = fmt.Sprintf("Rate limit reached%s in organization org-chaos on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.", for_, wait)
			h.Set("x-ratelimit-limit-requests", "60")
			h.Set("x-ratelimit-remaining-requests", "0")
			h.Set("x-ratelimit-reset-requests", wait.String())
		case 500:
			typ, msg = "server_error", "The server had an error while processing your request. Sorry about that!"
		case 502, 504:
			return htmlResponse(req, status, h, cloudflarePage(status))
		default: // 503
			typ, msg = "server_error", "The server is overloaded or not ready yet."
		}
		body = jsonText(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}})
	}
	h.Set("Content-Type", "application/json")
	return response(req, status, h, body)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b) + "\n"
}

// protoDuration renders a google.protobuf.Duration in JSON: "22s", "0.250s".
func protoDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
}

func htmlResponse(req *http.Request, status int, h http.Header, page string) *http.Response {
	h.Set("Content-Type", "text/html")
	return response(req, status, h, page)
}

// Gateway error pages, as the front ends of the providers send them.

func cloudflarePage(status int) string {
	t := fmt.Sprintf("%d %s", status, gatewayText(status))
	return "<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t + "</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
}

func azureGatewayPage(status int) string {
	t := fmt.Sprintf("%d %s", status, gatewayText(status))
	return "<html>\r\n<head><title>" + t + "</title></head>\r\n<body>\r\n<center><h1>" + t + "</h1></center>\r\n<hr><center>Microsoft-Azure-Application-Gateway/v2</center>\r\n</body>\r\n</html>\r\n"
}

func googlePage(status int) string {
	return fmt.Sprintf("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error %d (Server Error)!!1</title>\n  <p><b>%d.</b> <ins>That’s an error.</ins>\n  <p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.  <ins>That’s all we know.</ins>\n", status, status)
}

func gatewayText(status int) string {
	if status == 504 {
		return "Gateway Time-out"
	}
	return http.StatusText(status)
}
