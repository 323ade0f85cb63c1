package provider

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Google Gemini generateContent.

type geminiPart struct {
	Text    string `json:"text,omitempty"`
	Thought bool   `json:"thought,omitempty"`
}

type geminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []geminiPart `json:"parts"`
}

type geminiRequest struct {
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction,omitempty"`
	GenerationConfig  map[string]any  `json:"generationConfig,omitempty"`
}

func geminiBody(req *Request) *geminiRequest {
	b := &geminiRequest{}
	for _, m := range req.Messages {
		role := "user"
		if m.Role == "assistant" {
			role = "model"
		}
		b.Contents = append(b.Contents, geminiContent{Role: role, Parts: []geminiPart{{Text: m.Content}}})
	}
	if req.System != "" {
		b.SystemInstruction = &geminiContent{Parts: []geminiPart{{Text: req.System}}}
	}
	gc := map[string]any{}
	if req.MaxTokens > 0 {
		gc["maxOutputTokens"] = req.MaxTokens
	}
	if req.Temperature != nil {
		gc["temperature"] = *req.Temperature
	}
	if req.Schema != nil {
		gc["responseMimeType"] = "application/json"
		gc["responseJsonSchema"] = req.Schema
	}
	if len(gc) > 0 {
		b.GenerationConfig = gc
	}
	return b
}

type geminiResponseBody struct {
	Candidates []struct {
		Content      geminiContent `json:"content"`
		FinishReason string        `json:"finishReason"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata struct {
		PromptTokenCount     int `json:"promptTokenCount"`
		CandidatesTokenCount int `json:"candidatesTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
	ResponseID   string `json:"responseId"`
}

// geminiBlocked are the finish reasons that mean the answer was withheld
// for policy reasons.
var geminiBlocked = map[string]bool{
	"SAFETY": true, "PROHIBITED_CONTENT": true, "BLOCKLIST": true, "SPII": true, "RECITATION": true, "IMAGE_SAFETY": true,
}

func geminiResponse(raw []byte) (*Response, *Error) {
	var b geminiResponseBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, &Error{Class: ClassServer, Message: "response is not a generateContent response: " + truncate(err.Error(), 200)}
	}
	if len(b.Candidates) == 0 {
		if b.PromptFeedback != nil && b.PromptFeedback.BlockReason != "" {
			return nil, &Error{Class: ClassRefusal, Code: b.PromptFeedback.BlockReason, Message: "the prompt was blocked (" + b.PromptFeedback.BlockReason + ")", RequestID: b.ResponseID}
		}
		return nil, &Error{Class: ClassServer, Message: "response has no candidates", RequestID: b.ResponseID}
	}
	c := b.Candidates[0]
	var text strings.Builder
	for _, p := range c.Content.Parts {
		if !p.Thought {
			text.WriteString(p.Text)
		}
	}
	if geminiBlocked[c.FinishReason] {
		return nil, &Error{Class: ClassRefusal, Code: c.FinishReason, Message: "the answer was blocked (finishReason " + c.FinishReason + ")", Text: text.String(), RequestID: b.ResponseID}
	}
	return &Response{
		Text:         text.String(),
		Model:        b.ModelVersion,
		Usage:        Usage{InputTokens: b.UsageMetadata.PromptTokenCount, OutputTokens: b.UsageMetadata.CandidatesTokenCount},
		FinishReason: c.FinishReason,
		RequestID:    b.ResponseID,
	}, nil
}

type geminiStatus struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type       string `json:"@type"`
			RetryDelay string `json:"retryDelay"`
			Reason     string `json:"reason"`
			Violations []struct {
				QuotaID     string `json:"quotaId"`
				QuotaMetric string `json:"quotaMetric"`
			} `json:"violations"`
		} `json:"details"`
	} `json:"error"`
}

// geminiError classifies a google.rpc.Status error. RESOURCE_EXHAUSTED is
// a rate limit whose wait is RetryInfo.retryDelay, or an exhausted daily
// quota (QuotaFailure with a per-day quota id). An invalid key is 400
// INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID.
func geminiError(status int, raw []byte) *Error {
	var b geminiStatus
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		// Some Google front ends wrap the status in an array.
		var arr []geminiStatus
		if json.Unmarshal(trimmed, &arr) == nil && len(arr) > 0 {
			b = arr[0]
		}
	} else {
		_ = json.Unmarshal(trimmed, &b)
	}
	msg := b.Error.Message
	if msg == "" {
		msg = truncate(string(raw), 300)
	}
	e := &Error{Class: byStatus(status), Code: b.Error.Status, Message: truncate(msg, 500)}
	perDay, keyInvalid := false, false
	for _, d := range b.Error.Details {
		switch {
		case strings.HasSuffix(d.Type, "google.rpc.RetryInfo"):
			if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur > 0 {
				e.RetryAfter = dur
			}
		case strings.HasSuffix(d.Type, "google.rpc.QuotaFailure"):
			for _, v := range d.Violations {
				if strings.Contains(v.QuotaID, "PerDay") {
					perDay = true
				}
			}
		case strings.HasSuffix(d.Type, "google.rpc.ErrorInfo"):
			if d.Reason == "API_KEY_INVALID" {
				keyInvalid = true
			}
		}
	}
	lower := strings.ToLower(msg)
	switch b.Error.Status {
	case "RESOURCE_EXHAUSTED":
		e.Class = ClassRateLimit
		if perDay {
			e.Class = ClassQuota
		}
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		switch {
		case keyInvalid:
			e.Class = ClassAuth
		case strings.Contains(lower, "input token count") || strings.Contains(lower, "exceeds the maximum number of tokens"):
			e.Class = ClassContextLength
		default:
			e.Class = ClassBadRequest
		}
	case "UNAUTHENTICATED", "PERMISSION_DENIED":
		e.Class = ClassAuth
	case "NOT_FOUND":
		e.Class = ClassNotFound
	case "INTERNAL", "UNAVAILABLE", "UNKNOWN":
		e.Class = ClassServer
	case "DEADLINE_EXCEEDED":
		e.Class = ClassTimeout
	}
	return e
}
