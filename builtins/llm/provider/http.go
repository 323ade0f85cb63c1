package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/starflow/starflow/internal/retryafter"
)

// Default base URLs, as the official SDKs use them.
const (
	OpenAIBaseURL    = "https://api.openai.com/v1"
	AnthropicBaseURL = "https://api.anthropic.com"
	GeminiBaseURL    = "https://generativelanguage.googleapis.com"

	// AnthropicVersion is the anthropic-version header sent by default.
	AnthropicVersion = "2023-06-01"
	// AzureAPIVersion is the api-version query parameter sent by default.
	AzureAPIVersion = "2024-10-21"
)

// maxBody bounds how much of a response is read.
const maxBody = 16 << 20

// HTTP is a Provider that calls a provider's HTTP API.
type HTTP struct {
	Kind Kind
	// BaseURL is the API root: for OpenAI and OpenAI-compatible servers it
	// includes the version ("https://api.openai.com/v1",
	// "http://127.0.0.1:11434/v1"); for Azure it is the resource endpoint
	// ("https://myres.openai.azure.com"); for Anthropic and Gemini the host
	// ("https://api.anthropic.com").
	BaseURL string
	// APIVersion is Azure's api-version or Anthropic's anthropic-version;
	// empty uses the default.
	APIVersion string
	Client     *http.Client     // nil: http.DefaultClient
	Now        func() time.Time // for reset times in headers; nil: time.Now
}

// NewHTTP returns an HTTP provider of the given kind. An empty baseURL
// uses the provider's public endpoint (Azure and OpenAI-compatible
// servers have none and must be given one).
func NewHTTP(kind Kind, baseURL, apiVersion string, client *http.Client) (*HTTP, error) {
	if baseURL == "" {
		switch kind {
		case OpenAI:
			baseURL = OpenAIBaseURL
		case Anthropic:
			baseURL = AnthropicBaseURL
		case Gemini:
			baseURL = GeminiBaseURL
		default:
			return nil, fmt.Errorf("provider kind %s needs a base URL", kind)
		}
	}
	switch kind {
	case OpenAI, Azure, OpenAICompatible, Anthropic, Gemini:
	default:
		return nil, fmt.Errorf("provider kind %q does not speak HTTP", kind)
	}
	return &HTTP{Kind: kind, BaseURL: strings.TrimRight(baseURL, "/"), APIVersion: apiVersion, Client: client}, nil
}

func (h *HTTP) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Complete implements Provider.
func (h *HTTP) Complete(ctx context.Context, req *Request, key string) (*Response, error) {
	var (
		url  string
		body any
		hdr  = http.Header{}
	)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Accept", "application/json")
	switch h.Kind {
	case OpenAI, OpenAICompatible:
		url = h.BaseURL + "/chat/completions"
		body = openAIBody(req, h.Kind == OpenAI)
		if key != "" {
			hdr.Set("Authorization", "Bearer "+key)
		}
	case Azure:
		v := h.APIVersion
		if v == "" {
			v = AzureAPIVersion
		}
		url = h.BaseURL + "/openai/deployments/" + pathEscape(req.Model) + "/chat/completions?api-version=" + v
		body = openAIBody(req, false)
		hdr.Set("api-key", key)
	case Anthropic:
		url = h.BaseURL + "/v1/messages"
		body = anthropicBody(req)
		v := h.APIVersion
		if v == "" {
			v = AnthropicVersion
		}
		hdr.Set("x-api-key", key)
		hdr.Set("anthropic-version", v)
	case Gemini:
		url = h.BaseURL + "/v1beta/models/" + pathEscape(req.Model) + ":generateContent"
		body = geminiBody(req)
		hdr.Set("x-goog-api-key", key)
	default:
		return nil, &Error{Class: ClassBadRequest, Message: fmt.Sprintf("provider kind %q does not speak HTTP", h.Kind)}
	}
	if req.IdempotencyKey != "" && h.Kind != Gemini {
		hdr.Set("Idempotency-Key", req.IdempotencyKey)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, &Error{Class: ClassBadRequest, Message: "encode request: " + err.Error()}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, &Error{Class: ClassBadRequest, Message: Scrub(err.Error(), key)}
	}
	hreq.Header = hdr
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, transportError(ctx, err, key)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, transportError(ctx, err, key)
	}
	rl := h.rateLimit(resp.Header)
	reqID := firstHeader(resp.Header, "x-request-id", "request-id", "apim-request-id")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e *Error
		switch h.Kind {
		case Anthropic:
			e = anthropicError(resp.StatusCode, raw)
		case Gemini:
			e = geminiError(resp.StatusCode, raw)
		default:
			e = openAIError(resp.StatusCode, raw)
		}
		e.Status = resp.StatusCode
		e.Message = Scrub(e.Message, key)
		e.RateLimit = rl
		if e.RequestID == "" {
			e.RequestID = reqID
		}
		if ra, _ := retryafter.Parse(resp.Header, h.now()); ra > e.RetryAfter {
			e.RetryAfter = ra
		}
		return nil, e
	}
	var out *Response
	var perr *Error
	switch h.Kind {
	case Anthropic:
		out, perr = anthropicResponse(raw)
	case Gemini:
		out, perr = geminiResponse(raw)
	default:
		out, perr = openAIResponse(raw)
	}
	if perr != nil {
		perr.Status = resp.StatusCode
		perr.Message = Scrub(perr.Message, key)
		perr.RateLimit = rl
		perr.RequestID = reqID
		return nil, perr
	}
	out.RateLimit = rl
	if out.RequestID == "" {
		out.RequestID = reqID
	}
	return out, nil
}

func pathEscape(s string) string {
	// Model and deployment names are plain tokens; escape the few
	// characters that would change the path.
	r := strings.NewReplacer("/", "%2F", "?", "%3F", "#", "%23", " ", "%20")
	return r.Replace(s)
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// transportError classifies a failure to get a response.
func transportError(ctx context.Context, err error, key string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	msg := Scrub(err.Error(), key)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Class: ClassTimeout, Message: "no response in time: " + msg}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Class: ClassTimeout, Message: msg}
	}
	return &Error{Class: ClassNetwork, Message: msg}
}

// rateLimit reads the capacity headers of the provider's format.
func (h *HTTP) rateLimit(hd http.Header) RateLimit {
	rl := NoRateLimit
	num := func(name string) int {
		v := hd.Get(name)
		if v == "" {
			return -1
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return -1
		}
		return n
	}
	switch h.Kind {
	case Anthropic:
		rl.LimitRequests = num("anthropic-ratelimit-requests-limit")
		rl.LimitTokens = minKnown(num("anthropic-ratelimit-tokens-limit"), num("anthropic-ratelimit-input-tokens-limit"))
		rl.RemainingRequests = num("anthropic-ratelimit-requests-remaining")
		rl.RemainingTokens = minKnown(num("anthropic-ratelimit-tokens-remaining"), num("anthropic-ratelimit-input-tokens-remaining"))
		rl.ResetRequests = untilRFC3339(hd.Get("anthropic-ratelimit-requests-reset"), h.now())
		rl.ResetTokens = untilRFC3339(firstHeader(hd, "anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-input-tokens-reset"), h.now())
	case Gemini:
		// Gemini sends no rate-limit headers; its wait is in RetryInfo.
	default:
		rl.LimitRequests = num("x-ratelimit-limit-requests")
		rl.LimitTokens = num("x-ratelimit-limit-tokens")
		rl.RemainingRequests = num("x-ratelimit-remaining-requests")
		rl.RemainingTokens = num("x-ratelimit-remaining-tokens")
		rl.ResetRequests = parseResetDuration(hd.Get("x-ratelimit-reset-requests"))
		rl.ResetTokens = parseResetDuration(hd.Get("x-ratelimit-reset-tokens"))
	}
	rl.Present = rl.RemainingRequests >= 0 || rl.RemainingTokens >= 0
	return rl
}

func minKnown(a, b int) int {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	case a < b:
		return a
	}
	return b
}

func untilRFC3339(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// parseResetDuration reads OpenAI's reset values: "1s", "6m0s", "12ms",
// "0.5s", or a bare number of seconds.
func parseResetDuration(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	return 0
}

// byStatus classifies by HTTP status alone.
func byStatus(status int) Class {
	switch {
	case status == 429:
		return ClassRateLimit
	case status == 401 || status == 403:
		return ClassAuth
	case status == 404:
		return ClassNotFound
	case status == 408:
		return ClassTimeout
	case status == 409: // lock timeouts; the official SDKs retry them
		return ClassServer
	case status == 504:
		return ClassTimeout
	case status >= 500:
		return ClassServer
	}
	return ClassBadRequest
}

// jsonString reads a JSON value that may be a string, a number or null.
func jsonString(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return strings.Trim(string(raw), `"`)
}
