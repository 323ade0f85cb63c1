package provider

import (
	"encoding/json"
	"strings"
)

// Anthropic Messages.

type anthropicRequest struct {
	Model       string    `json:"model"`
	MaxTokens   int       `json:"max_tokens"`
	System      string    `json:"system,omitempty"`
	Messages    []Message `json:"messages"`
	Temperature *float64  `json:"temperature,omitempty"`
}

func anthropicBody(req *Request) *anthropicRequest {
	b := &anthropicRequest{Model: req.Model, MaxTokens: req.MaxTokens, System: req.System, Messages: req.Messages, Temperature: req.Temperature}
	if b.MaxTokens <= 0 {
		b.MaxTokens = DefaultMaxTokens
	}
	if req.Schema != nil {
		// The Messages API has no JSON mode: ask in the system prompt.
		s, _ := json.Marshal(req.Schema)
		inst := "Reply with only a JSON value (no prose, no code fences) that matches this JSON Schema:\n" + string(s)
		if b.System != "" {
			b.System += "\n\n" + inst
		} else {
			b.System = inst
		}
	}
	return b
}

type anthropicResponseBody struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Model      string `json:"model"`
	StopReason string `json:"stop_reason"`
	Content    []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Usage struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

func anthropicResponse(raw []byte) (*Response, *Error) {
	var b anthropicResponseBody
	if err := json.Unmarshal(raw, &b); err != nil || b.Type != "message" {
		msg := "response is not a message"
		if err != nil {
			msg += ": " + truncate(err.Error(), 200)
		}
		return nil, &Error{Class: ClassServer, Message: msg}
	}
	var text strings.Builder
	for _, c := range b.Content {
		if c.Type == "text" {
			text.WriteString(c.Text)
		}
	}
	if b.StopReason == "refusal" {
		return nil, &Error{Class: ClassRefusal, Code: "refusal", Message: "the model declined to answer (stop_reason refusal)", Text: text.String(), RequestID: b.ID}
	}
	return &Response{
		Text:         text.String(),
		Model:        b.Model,
		Usage:        Usage{InputTokens: b.Usage.InputTokens, OutputTokens: b.Usage.OutputTokens},
		FinishReason: b.StopReason,
		RequestID:    b.ID,
	}, nil
}

type anthropicErrorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Details struct {
			ErrorCode string `json:"error_code"`
		} `json:"details"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// anthropicError classifies by error.type: rate_limit_error (429; a spend
// limit when details.error_code is enforced_spend_limit_reached),
// overloaded_error (529), api_error (500), authentication_error,
// permission_error, not_found_error, billing_error, request_too_large and
// invalid_request_error ("prompt is too long", "credit balance is too
// low").
func anthropicError(status int, raw []byte) *Error {
	var b anthropicErrorBody
	_ = json.Unmarshal(raw, &b)
	msg := b.Error.Message
	if msg == "" {
		msg = truncate(string(raw), 300)
	}
	e := &Error{Class: byStatus(status), Code: b.Error.Type, Message: truncate(msg, 500), RequestID: b.RequestID}
	lower := strings.ToLower(msg)
	spend := b.Error.Details.ErrorCode == "enforced_spend_limit_reached" || strings.Contains(lower, "spend limit") ||
		strings.Contains(lower, "credit balance")
	switch b.Error.Type {
	case "rate_limit_error":
		e.Class = ClassRateLimit
		if spend {
			e.Class = ClassQuota
		}
	case "overloaded_error", "api_error":
		e.Class = ClassServer
	case "timeout_error":
		e.Class = ClassTimeout
	case "authentication_error", "permission_error":
		e.Class = ClassAuth
	case "not_found_error":
		e.Class = ClassNotFound
	case "billing_error":
		e.Class = ClassQuota
	case "request_too_large":
		e.Class = ClassBadRequest
	case "invalid_request_error":
		switch {
		case strings.Contains(lower, "prompt is too long") || strings.Contains(lower, "context window"):
			e.Class = ClassContextLength
		case spend:
			e.Class = ClassQuota
		default:
			e.Class = ClassBadRequest
		}
	}
	if b.Error.Details.ErrorCode != "" {
		e.Code += "/" + b.Error.Details.ErrorCode
	}
	return e
}
