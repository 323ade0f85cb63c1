// Package llmtest runs loopback HTTP servers that speak the LLM providers'
// wire formats faithfully enough to test clients against: the request
// paths, authentication headers and bodies each API expects (checked, with
// the API's own error when wrong), the success bodies, the exact error
// envelopes and codes (OpenAI and Azure error objects, Anthropic's typed
// errors including 529 overloaded_error, Gemini's google.rpc.Status with
// RetryInfo and QuotaFailure details) and the rate-limit headers.
//
// A test scripts a server's replies (Script, Handle) and inspects what it
// received (Requests, Calls). Faults are named (RateLimit, Overloaded,
// ContextLength, Refusal, ...) and rendered in each provider's format, so
// the same test reads the same for every provider. Servers listen on
// 127.0.0.1 only.
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Flavor is a provider's wire format.
type Flavor string

// The flavors.
const (
	OpenAI     Flavor = "openai"            // POST /v1/chat/completions, Authorization: Bearer
	Azure      Flavor = "azure"             // POST /openai/deployments/{d}/chat/completions?api-version=, api-key
	Compatible Flavor = "openai_compatible" // POST /v1/chat/completions, no key needed (Ollama, vLLM, llama.cpp)
	Anthropic  Flavor = "anthropic"         // POST /v1/messages, x-api-key, anthropic-version
	Gemini     Flavor = "gemini"            // POST /v1beta/models/{m}:generateContent, x-goog-api-key
)

// Fault is a failure a server answers with, in its flavor's format.
type Fault string

// The faults.
const (
	None          Fault = ""
	ServerError   Fault = "server_error"   // 500
	Unavailable   Fault = "unavailable"    // 503 (Anthropic: 529 overloaded_error)
	Overloaded    Fault = "overloaded"     // Anthropic 529 overloaded_error; others 503
	RateLimit     Fault = "rate_limit"     // 429 with Reply.RetryAfter (Gemini: RESOURCE_EXHAUSTED + RetryInfo)
	Quota         Fault = "quota"          // 429 insufficient_quota / spend limit / per-day quota
	Unauthorized  Fault = "unauthorized"   // 401 (Gemini: 400 API_KEY_INVALID); OpenAI's echoes the key presented
	NotFound      Fault = "not_found"      // 404 unknown model or deployment
	BadRequest    Fault = "bad_request"    // 400
	ContextLength Fault = "context_length" // 400 context length exceeded
	Refusal       Fault = "refusal"        // 200 with the refusal signal (Azure: 400 content_filter)
	Hang          Fault = "hang"           // never answers; the client must give up
)

// Reply is how a server answers one request.
type Reply struct {
	Text         string        // the answer on success; default: "<server name>: <start of the prompt>"
	Fault        Fault         // a failure instead of an answer
	RetryAfter   time.Duration // for RateLimit and Quota: the wait the provider asks for
	Delay        time.Duration // wait this long before answering
	Header       http.Header   // extra response headers (see CapacityHeaders)
	InputTokens  int           // reported usage; default: a quarter of the characters
	OutputTokens int
}

// Request is what a server received.
type Request struct {
	N              int // 1-based order of arrival
	At             time.Time
	Path           string
	Query          url.Values
	Header         http.Header
	Body           map[string]any
	Model          string // from the body, or the path for Azure and Gemini
	System         string
	Messages       []Message // user/assistant turns, normalised across flavors
	Key            string    // the API key presented
	IdempotencyKey string
	JSONMode       bool // the request asked for JSON (response_format, responseMimeType)
}

// Message is a normalised conversation turn.
type Message struct{ Role, Content string }

// LastUser returns the last user message.
func (r *Request) LastUser() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Content
		}
	}
	return ""
}

// Server is a fake provider endpoint.
type Server struct {
	Flavor Flavor
	Name   string
	// Key is the API key the server accepts; "" accepts any (and none,
	// for the compatible flavor).
	Key string

	srv *httptest.Server

	mu       sync.Mutex
	script   []Reply
	handle   func(*Request) Reply
	requests []*Request
	calls    int
	noRecord bool
	header   http.Header
	closed   chan struct{}
}

// KeepRequests says whether the server keeps what it received (the
// default); benchmarks turn it off so memory stays flat. Calls counts
// either way.
func (s *Server) KeepRequests(on bool) {
	s.mu.Lock()
	s.noRecord = !on
	s.mu.Unlock()
}

// New starts a server of the given flavor on 127.0.0.1 and closes it when
// the test ends. name appears in default answers.
func New(t testing.TB, flavor Flavor, name, key string) *Server {
	s := &Server{Flavor: flavor, Name: name, Key: key, closed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, releasing requests that hang.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// URL is the base URL a client is configured with: with /v1 for the
// OpenAI and compatible flavors (as OPENAI_BASE_URL), the bare host
// otherwise.
func (s *Server) URL() string {
	switch s.Flavor {
	case OpenAI, Compatible:
		return s.srv.URL + "/v1"
	}
	return s.srv.URL
}

// Script queues replies for the next requests, in order; afterwards the
// handler (or the default answer) replies.
func (s *Server) Script(replies ...Reply) {
	s.mu.Lock()
	s.script = append(s.script, replies...)
	s.mu.Unlock()
}

// Handle sets the reply function used when no scripted reply is queued.
func (s *Server) Handle(fn func(*Request) Reply) {
	s.mu.Lock()
	s.handle = fn
	s.mu.Unlock()
}

// SetHeader adds headers to every response (for example CapacityHeaders).
func (s *Server) SetHeader(h http.Header) {
	s.mu.Lock()
	s.header = h
	s.mu.Unlock()
}

// Calls returns how many requests the server has received.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Requests returns the requests received so far.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

// CapacityHeaders returns the rate-limit headers the flavor sends for the
// given remaining requests and tokens, both refilling after reset.
func CapacityHeaders(f Flavor, remainingRequests, remainingTokens int, reset time.Duration) http.Header {
	h := http.Header{}
	switch f {
	case Anthropic:
		at := time.Now().Add(reset).UTC().Format(time.RFC3339)
		h.Set("anthropic-ratelimit-requests-limit", "50")
		h.Set("anthropic-ratelimit-requests-remaining", strconv.Itoa(remainingRequests))
		h.Set("anthropic-ratelimit-requests-reset", at)
		h.Set("anthropic-ratelimit-tokens-limit", "100000")
		h.Set("anthropic-ratelimit-tokens-remaining", strconv.Itoa(remainingTokens))
		h.Set("anthropic-ratelimit-tokens-reset", at)
	case Gemini:
		// Gemini sends no rate-limit headers.
	default:
		h.Set("x-ratelimit-limit-requests", "500")
		h.Set("x-ratelimit-remaining-requests", strconv.Itoa(remainingRequests))
		h.Set("x-ratelimit-reset-requests", reset.String())
		h.Set("x-ratelimit-limit-tokens", "200000")
		h.Set("x-ratelimit-remaining-tokens", strconv.Itoa(remainingTokens))
		h.Set("x-ratelimit-reset-tokens", reset.String())
	}
	return h
}

func (s *Server) serve(w http.ResponseWriter, hr *http.Request) {
	raw, _ := io.ReadAll(hr.Body)
	req := &Request{At: time.Now(), Path: hr.URL.Path, Query: hr.URL.Query(), Header: hr.Header.Clone(), IdempotencyKey: hr.Header.Get("Idempotency-Key")}
	_ = json.Unmarshal(raw, &req.Body)

	s.mu.Lock()
	s.calls++
	req.N = s.calls
	if !s.noRecord {
		s.requests = append(s.requests, req)
	}
	var reply Reply
	scripted := false
	if len(s.script) > 0 {
		reply, s.script = s.script[0], s.script[1:]
		scripted = true
	}
	handle := s.handle
	extra := s.header
	s.mu.Unlock()

	for k, vs := range extra {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	// Protocol checks, answered the way the real API answers them.
	if status, body := s.check(hr, req); status != 0 {
		writeJSON(w, status, body)
		return
	}
	if !scripted {
		if handle != nil {
			reply = handle(req)
		} else {
			reply = Reply{}
		}
	}
	for k, vs := range reply.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if reply.Delay > 0 {
		t := time.NewTimer(reply.Delay)
		select {
		case <-t.C:
		case <-hr.Context().Done():
			t.Stop()
			return
		case <-s.closed:
			t.Stop()
			return
		}
	}
	if reply.Fault == Hang {
		select {
		case <-hr.Context().Done():
		case <-s.closed:
		}
		return
	}
	if reply.Fault != None {
		status, body := s.fault(reply, req)
		if reply.Fault == RateLimit || reply.Fault == Quota {
			if reply.RetryAfter > 0 && s.Flavor != Gemini {
				w.Header().Set("retry-after", strconv.Itoa(int(math.Ceil(reply.RetryAfter.Seconds()))))
				if s.Flavor != Anthropic {
					w.Header().Set("retry-after-ms", strconv.FormatInt(reply.RetryAfter.Milliseconds(), 10))
				}
			}
		}
		writeJSON(w, status, body)
		return
	}
	if reply.Text == "" {
		reply.Text = s.Name + ": " + prefix(req.LastUser(), 40)
	}
	if reply.InputTokens == 0 {
		n := len(req.System)
		for _, m := range req.Messages {
			n += len(m.Content)
		}
		reply.InputTokens = (n + 3) / 4
	}
	if reply.OutputTokens == 0 {
		reply.OutputTokens = (len(reply.Text) + 3) / 4
	}
	writeJSON(w, http.StatusOK, s.success(reply, req))
}

func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// Done returns a channel closed when the server closes.
func (s *Server) Done() <-chan struct{} { return s.closed }

func str(v any) string {
	s, _ := v.(string)
	return s
}

// check validates the request as the real API would, filling in req's
// normalised fields. A non-zero status is the API's rejection.
func (s *Server) check(hr *http.Request, req *Request) (int, any) {
	if hr.Method != http.MethodPost {
		return s.errorBody(http.StatusMethodNotAllowed, "method not allowed", req)
	}
	switch s.Flavor {
	case OpenAI, Compatible, Azure:
		if s.Flavor == Azure {
			rest, ok := strings.CutPrefix(hr.URL.Path, "/openai/deployments/")
			dep, tail, _ := strings.Cut(rest, "/")
			if !ok || tail != "chat/completions" || dep == "" {
				return 404, map[string]any{"error": map[string]any{"code": "404", "message": "Resource not found"}}
			}
			req.Model = dep
			if hr.URL.Query().Get("api-version") == "" {
				return 404, map[string]any{"error": map[string]any{"code": "404", "message": "Resource not found"}}
			}
			req.Key = hr.Header.Get("api-key")
			if s.Key != "" && req.Key != s.Key {
				return 401, map[string]any{"error": map[string]any{"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}
			}
		} else {
			if hr.URL.Path != "/v1/chat/completions" {
				return 404, openAIErr("Invalid URL (POST "+hr.URL.Path+")", "invalid_request_error", nil, nil)
			}
			req.Model = str(req.Body["model"])
			req.Key, _ = strings.CutPrefix(hr.Header.Get("Authorization"), "Bearer ")
			if s.Key != "" && req.Key != s.Key {
				return 401, s.unauthorized(req)
			}
		}
		msgs, _ := req.Body["messages"].([]any)
		if len(msgs) == 0 {
			return 400, openAIErr("[] is too short - 'messages'", "invalid_request_error", "messages", nil)
		}
		for _, m := range msgs {
			mm, _ := m.(map[string]any)
			role, content := str(mm["role"]), str(mm["content"])
			if role == "system" || role == "developer" {
				req.System += content
				continue
			}
			req.Messages = append(req.Messages, Message{Role: role, Content: content})
		}
		if rf, ok := req.Body["response_format"].(map[string]any); ok {
			req.JSONMode = str(rf["type"]) == "json_schema" || str(rf["type"]) == "json_object"
		}
	case Anthropic:
		if hr.URL.Path != "/v1/messages" {
			return 404, anthropicErr("not_found_error", "Not Found")
		}
		req.Key = hr.Header.Get("x-api-key")
		if s.Key != "" && req.Key != s.Key {
			return 401, anthropicErr("authentication_error", "invalid x-api-key")
		}
		if hr.Header.Get("anthropic-version") == "" {
			return 400, anthropicErr("invalid_request_error", "anthropic-version: header is required")
		}
		req.Model = str(req.Body["model"])
		if _, ok := req.Body["max_tokens"].(float64); !ok {
			return 400, anthropicErr("invalid_request_error", "max_tokens: Field required")
		}
		req.System = str(req.Body["system"])
		msgs, _ := req.Body["messages"].([]any)
		if len(msgs) == 0 {
			return 400, anthropicErr("invalid_request_error", "messages: at least one message is required")
		}
		for _, m := range msgs {
			mm, _ := m.(map[string]any)
			req.Messages = append(req.Messages, Message{Role: str(mm["role"]), Content: str(mm["content"])})
		}
		if req.Messages[0].Role != "user" {
			return 400, anthropicErr("invalid_request_error", "messages: first message must use the \"user\" role")
		}
	case Gemini:
		rest, ok := strings.CutPrefix(hr.URL.Path, "/v1beta/models/")
		model, found := strings.CutSuffix(rest, ":generateContent")
		if !ok || !found {
			return 404, geminiErr(404, "NOT_FOUND", "The requested URL was not found on this server.", nil)
		}
		req.Model = model
		req.Key = hr.Header.Get("x-goog-api-key")
		if s.Key != "" && req.Key != s.Key {
			return s.fault(Reply{Fault: Unauthorized}, req)
		}
		contents, _ := req.Body["contents"].([]any)
		if len(contents) == 0 {
			return 400, geminiErr(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n", nil)
		}
		for _, c := range contents {
			cm, _ := c.(map[string]any)
			role := str(cm["role"])
			if role == "model" {
				role = "assistant"
			}
			req.Messages = append(req.Messages, Message{Role: role, Content: partsText(cm["parts"])})
		}
		if si, ok := req.Body["systemInstruction"].(map[string]any); ok {
			req.System = partsText(si["parts"])
		}
		if gc, ok := req.Body["generationConfig"].(map[string]any); ok {
			req.JSONMode = str(gc["responseMimeType"]) == "application/json"
		}
	}
	return 0, nil
}

func partsText(v any) string {
	parts, _ := v.([]any)
	var b strings.Builder
	for _, p := range parts {
		pm, _ := p.(map[string]any)
		b.WriteString(str(pm["text"]))
	}
	return b.String()
}

func (s *Server) errorBody(status int, msg string, req *Request) (int, any) {
	switch s.Flavor {
	case Anthropic:
		return status, anthropicErr("invalid_request_error", msg)
	case Gemini:
		return status, geminiErr(status, "INVALID_ARGUMENT", msg, nil)
	}
	return status, openAIErr(msg, "invalid_request_error", nil, nil)
}

func openAIErr(msg, typ string, param, code any) map[string]any {
	return map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": param, "code": code}}
}

func anthropicErr(typ, msg string) map[string]any {
	return map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}, "request_id": fmt.Sprintf("req_%d", time.Now().UnixNano()%1e12)}
}

func geminiErr(code int, status, msg string, details []any) map[string]any {
	e := map[string]any{"code": code, "message": msg, "status": status}
	if details != nil {
		e["details"] = details
	}
	return map[string]any{"error": e}
}

// unauthorized is OpenAI's 401. It echoes the whole key presented (the
// real API masks the middle) so that tests prove clients scrub it.
func (s *Server) unauthorized(req *Request) map[string]any {
	return openAIErr("Incorrect API key provided: "+req.Key+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", nil, "invalid_api_key")
}

func durationJSON(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// fault renders a failure in the flavor's format.
func (s *Server) fault(r Reply, req *Request) (int, any) {
	model := req.Model
	switch s.Flavor {
	case Anthropic:
		switch r.Fault {
		case ServerError:
			return 500, anthropicErr("api_error", "Internal server error")
		case Unavailable, Overloaded:
			return 529, anthropicErr("overloaded_error", "Overloaded")
		case RateLimit:
			return 429, anthropicErr("rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.")
		case Quota:
			b := anthropicErr("rate_limit_error", "You have reached your specified API usage limits. You will regain access on the first day of next month at 00:00 UTC.")
			b["error"].(map[string]any)["details"] = map[string]any{"error_code": "enforced_spend_limit_reached"}
			return 429, b
		case Unauthorized:
			return 401, anthropicErr("authentication_error", "invalid x-api-key")
		case NotFound:
			return 404, anthropicErr("not_found_error", "model: "+model)
		case ContextLength:
			return 400, anthropicErr("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
		case Refusal:
			return 200, map[string]any{
				"id": fmt.Sprintf("msg_%d", req.N), "type": "message", "role": "assistant", "model": model,
				"content": []any{}, "stop_reason": "refusal", "stop_sequence": nil,
				"usage": map[string]any{"input_tokens": 10, "output_tokens": 0},
			}
		default:
			return 400, anthropicErr("invalid_request_error", "messages.0.content: Input should be a valid list")
		}
	case Gemini:
		switch r.Fault {
		case ServerError:
			return 500, geminiErr(500, "INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", nil)
		case Unavailable, Overloaded:
			return 503, geminiErr(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", nil)
		case RateLimit, Quota:
			quotaID := "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
			if r.Fault == Quota {
				quotaID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
			}
			details := []any{
				map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{
					"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quotaID,
					"quotaDimensions": map[string]any{"location": "global", "model": model}, "quotaValue": "10",
				}}},
				map[string]any{"@type": "type.googleapis.com/google.rpc.Help", "links": []any{map[string]any{
					"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
				}}},
			}
			if r.RetryAfter > 0 {
				details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": durationJSON(r.RetryAfter)})
			}
			return 429, geminiErr(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.", details)
		case Unauthorized:
			return 400, geminiErr(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", []any{
				map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
					"metadata": map[string]any{"service": "generativelanguage.googleapis.com"}},
				map[string]any{"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."},
			})
		case NotFound:
			return 404, geminiErr(404, "NOT_FOUND", "models/"+model+" is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.", nil)
		case ContextLength:
			return 400, geminiErr(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", nil)
		case Refusal:
			return 200, map[string]any{
				"candidates": []any{map[string]any{"finishReason": "SAFETY", "index": 0, "safetyRatings": []any{
					map[string]any{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
				}}},
				"usageMetadata": map[string]any{"promptTokenCount": 10, "totalTokenCount": 10},
				"modelVersion":  model, "responseId": fmt.Sprintf("resp-%d", req.N),
			}
		default:
			return 400, geminiErr(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unknown name \"foo\": Cannot find field.", nil)
		}
	case Azure:
		switch r.Fault {
		case ServerError:
			return 500, map[string]any{"error": map[string]any{"code": "InternalServerError", "message": "The service is temporarily unable to process your request. Please try again later."}}
		case Unavailable, Overloaded:
			return 503, map[string]any{"error": map[string]any{"code": "ServiceUnavailable", "message": "The service is temporarily unavailable. Please try again later."}}
		case RateLimit:
			secs := int(math.Ceil(r.RetryAfter.Seconds()))
			return 429, map[string]any{"error": map[string]any{"code": "429", "message": fmt.Sprintf("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version %s have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after %d seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.", req.Query.Get("api-version"), secs)}}
		case Unauthorized:
			return 401, map[string]any{"error": map[string]any{"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}
		case NotFound:
			return 404, map[string]any{"error": map[string]any{"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}
		case Refusal:
			return 400, map[string]any{"error": map[string]any{
				"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
				"type":    nil, "param": "prompt", "code": "content_filter", "status": 400,
				"innererror": map[string]any{"code": "ResponsibleAIPolicyViolation", "content_filter_result": map[string]any{
					"hate": map[string]any{"filtered": true, "severity": "high"},
				}},
			}}
		}
	}
	// OpenAI and compatible servers (and Azure's OpenAI-shaped errors).
	switch r.Fault {
	case ServerError:
		return 500, openAIErr("The server had an error while processing your request. Sorry about that!", "server_error", nil, nil)
	case Unavailable, Overloaded:
		return 503, openAIErr("The server is overloaded or not ready yet.", "server_error", nil, nil)
	case RateLimit:
		return 429, openAIErr(fmt.Sprintf("Rate limit reached for %s in organization org-test on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.", model, r.RetryAfter), "requests", nil, "rate_limit_exceeded")
	case Quota:
		return 429, openAIErr("You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "insufficient_quota", nil, "insufficient_quota")
	case Unauthorized:
		return 401, s.unauthorized(req)
	case NotFound:
		return 404, openAIErr("The model `"+model+"` does not exist or you do not have access to it.", "invalid_request_error", nil, "model_not_found")
	case ContextLength:
		return 400, openAIErr("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.", "invalid_request_error", "messages", "context_length_exceeded")
	case Refusal:
		return 200, map[string]any{
			"id": fmt.Sprintf("chatcmpl-%d", req.N), "object": "chat.completion", "created": time.Now().Unix(), "model": model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": nil, "refusal": "I'm sorry, I can't assist with that request."}, "logprobs": nil, "finish_reason": "stop"}},
			"usage":   map[string]any{"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
		}
	}
	return 400, openAIErr("Invalid value for 'temperature': expected a number between 0 and 2.", "invalid_request_error", "temperature", "invalid_value")
}

// success renders an answer in the flavor's format.
func (s *Server) success(r Reply, req *Request) any {
	model := req.Model
	switch s.Flavor {
	case Anthropic:
		return map[string]any{
			"id": fmt.Sprintf("msg_%d", req.N), "type": "message", "role": "assistant", "model": model,
			"content":     []any{map[string]any{"type": "text", "text": r.Text}},
			"stop_reason": "end_turn", "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": r.InputTokens, "output_tokens": r.OutputTokens},
		}
	case Gemini:
		return map[string]any{
			"candidates": []any{map[string]any{
				"content":      map[string]any{"parts": []any{map[string]any{"text": r.Text}}, "role": "model"},
				"finishReason": "STOP", "index": 0,
			}},
			"usageMetadata": map[string]any{"promptTokenCount": r.InputTokens, "candidatesTokenCount": r.OutputTokens, "totalTokenCount": r.InputTokens + r.OutputTokens},
			"modelVersion":  model, "responseId": fmt.Sprintf("resp-%d", req.N),
		}
	}
	return map[string]any{
		"id": fmt.Sprintf("chatcmpl-%d", req.N), "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []any{map[string]any{
			"index": 0, "message": map[string]any{"role": "assistant", "content": r.Text, "refusal": nil},
			"logprobs": nil, "finish_reason": "stop",
		}},
		"usage":              map[string]any{"prompt_tokens": r.InputTokens, "completion_tokens": r.OutputTokens, "total_tokens": r.InputTokens + r.OutputTokens},
		"system_fingerprint": "fp_llmtest",
	}
}
