package provider

import (
	"encoding/json"
	"strings"
)

// OpenAI Chat Completions, also spoken by Azure OpenAI and by
// OpenAI-compatible servers.

type openAIMessage struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
	Refusal *string `json:"refusal,omitempty"`
}

type openAIRequest struct {
	Model               string          `json:"model,omitempty"`
	Messages            []openAIMessage `json:"messages"`
	MaxTokens           int             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	ResponseFormat      any             `json:"response_format,omitempty"`
}

// openAIBody builds the request. The OpenAI API itself takes
// max_completion_tokens (max_tokens is deprecated there and refused by
// reasoning models); Azure and compatible servers take max_tokens.
func openAIBody(req *Request, official bool) *openAIRequest {
	b := &openAIRequest{Model: req.Model, Temperature: req.Temperature}
	if official {
		b.MaxCompletionTokens = req.MaxTokens
	} else {
		b.MaxTokens = req.MaxTokens
	}
	if req.System != "" {
		s := req.System
		b.Messages = append(b.Messages, openAIMessage{Role: "system", Content: &s})
	}
	for _, m := range req.Messages {
		c := m.Content
		b.Messages = append(b.Messages, openAIMessage{Role: m.Role, Content: &c})
	}
	if req.Schema != nil {
		b.ResponseFormat = map[string]any{
			"type": "json_schema",
			"json_schema": map[string]any{
				"name":   "response",
				"schema": req.Schema,
				"strict": false,
			},
		}
	}
	return b
}

type openAIResponseBody struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int           `json:"index"`
		Message      openAIMessage `json:"message"`
		FinishReason string        `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

func openAIResponse(raw []byte) (*Response, *Error) {
	var b openAIResponseBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, &Error{Class: ClassServer, Message: "response is not a chat completion: " + truncate(err.Error(), 200)}
	}
	if len(b.Choices) == 0 {
		return nil, &Error{Class: ClassServer, Message: "response has no choices"}
	}
	c := b.Choices[0]
	text := ""
	if c.Message.Content != nil {
		text = *c.Message.Content
	}
	if c.Message.Refusal != nil && *c.Message.Refusal != "" {
		return nil, &Error{Class: ClassRefusal, Code: "refusal", Message: truncate(*c.Message.Refusal, 300), Text: *c.Message.Refusal}
	}
	if c.FinishReason == "content_filter" {
		return nil, &Error{Class: ClassRefusal, Code: "content_filter", Message: "the answer was withheld by the content filter", Text: text}
	}
	return &Response{
		Text:         text,
		Model:        b.Model,
		Usage:        Usage{InputTokens: b.Usage.PromptTokens, OutputTokens: b.Usage.CompletionTokens},
		FinishReason: c.FinishReason,
		RequestID:    "",
	}, nil
}

type openAIErrorBody struct {
	Error struct {
		Message    string          `json:"message"`
		Type       json.RawMessage `json:"type"`
		Code       json.RawMessage `json:"code"`
		InnerError struct {
			Code string `json:"code"`
		} `json:"innererror"`
	} `json:"error"`
}

// openAIError classifies an OpenAI-format error. Azure uses the same
// envelope, with codes such as "429", "DeploymentNotFound" or
// "content_filter" (innererror ResponsibleAIPolicyViolation).
func openAIError(status int, raw []byte) *Error {
	var b openAIErrorBody
	_ = json.Unmarshal(raw, &b)
	typ := jsonString(b.Error.Type)
	code := jsonString(b.Error.Code)
	msg := b.Error.Message
	if msg == "" {
		msg = truncate(string(raw), 300)
	}
	e := &Error{Class: byStatus(status), Code: code, Message: truncate(msg, 500)}
	if e.Code == "" {
		e.Code = typ
	}
	lower := strings.ToLower(msg)
	switch {
	case code == "insufficient_quota" || typ == "insufficient_quota":
		e.Class = ClassQuota
	case code == "context_length_exceeded" || code == "string_above_max_length" && strings.Contains(lower, "context") ||
		strings.Contains(lower, "maximum context length"):
		e.Class = ClassContextLength
	case code == "content_filter" || code == "content_policy_violation" || b.Error.InnerError.Code == "ResponsibleAIPolicyViolation":
		e.Class = ClassRefusal
	}
	return e
}
