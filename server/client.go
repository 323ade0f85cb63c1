package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/starflow/starflow/internal/view"
	"github.com/starflow/starflow/journal"
)

// Client talks to a starflow server's API.
type Client struct {
	BaseURL string // e.g. "http://127.0.0.1:8644"
	Token   string // bearer token, if the server wants one
	HTTP    *http.Client
}

// NewClient returns a client for the server at addr ("host:port").
func NewClient(addr, token string) *Client {
	return &Client{BaseURL: "http://" + addr, Token: token, HTTP: &http.Client{Timeout: 11 * time.Minute}}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil || method != http.MethodGet {
		// The server refuses state-changing requests without it, also
		// bodiless ones (spec/api.md, Security).
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("starflow server at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			eb.Error.Status = resp.StatusCode
			return &eb.Error
		}
		return &APIError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(data))}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Start submits a run.
func (c *Client) Start(ctx context.Context, req StartRequest) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs", req, &out)
}

// Get returns a run.
func (c *Client) Get(ctx context.Context, id string) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id), nil, &out)
}

// Wait waits up to timeout for a run to leave the running state.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) (*RunResponse, error) {
	return c.WaitWhile(ctx, id, journal.StatusRunning, timeout)
}

// WaitWhile waits up to timeout for a run's status to be other than while.
func (c *Client) WaitWhile(ctx context.Context, id string, while journal.Status, timeout time.Duration) (*RunResponse, error) {
	var out RunResponse
	q := url.Values{"timeout": {timeout.String()}, "status": {string(while)}}
	return &out, c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id)+"/wait?"+q.Encode(), nil, &out)
}

// List lists runs. When some runs are damaged, it returns the others with
// a *journal.CorruptRunsError naming them.
func (c *Client) List(ctx context.Context, statuses []journal.Status, limit int) ([]*journal.Run, error) {
	q := url.Values{}
	if len(statuses) > 0 {
		var ss []string
		for _, s := range statuses {
			ss = append(ss, string(s))
		}
		q.Set("status", strings.Join(ss, ","))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var out ListResponse
	if err := c.do(ctx, http.MethodGet, "/v1/runs?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	if len(out.Corrupt) > 0 {
		bad := &journal.CorruptRunsError{}
		for _, cr := range out.Corrupt {
			bad.Runs = append(bad.Runs, &journal.CorruptError{RunID: cr.ID, Seq: cr.Seq, Reason: cr.Reason})
		}
		return out.Runs, bad
	}
	return out.Runs, nil
}

// History returns a run's journal as events.
func (c *Client) History(ctx context.Context, id string) ([]view.Event, error) {
	var out struct {
		Events []view.Event `json:"events"`
	}
	return out.Events, c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id)+"/history", nil, &out)
}

// Answer answers the question a run asks.
func (c *Client) Answer(ctx context.Context, id string, value json.RawMessage, by string) (*MessageResponse, error) {
	var out MessageResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/answer", MessageRequest{Value: value, By: by}, &out)
}

// Signal sends a named signal to a run.
func (c *Client) Signal(ctx context.Context, id, name string, value json.RawMessage, by string) (*MessageResponse, error) {
	var out MessageResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/signals/"+url.PathEscape(name), MessageRequest{Value: value, By: by}, &out)
}

// Cancel cancels a run.
func (c *Client) Cancel(ctx context.Context, id, by string) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/cancel", CancelRequest{By: by}, &out)
}

// Retry releases a quarantined run; the server continues it.
func (c *Client) Retry(ctx context.Context, id, by string) (*RunResponse, error) {
	var out RunResponse
	err := c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/retry", CancelRequest{By: by}, &out)
	return &out, err
}

// Resume asks the server to continue a run now.
func (c *Client) Resume(ctx context.Context, id string) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/resume", nil, &out)
}

// Check replays a run against new code (entry and its files) on the server.
func (c *Client) Check(ctx context.Context, id string, code CodeRequest) (*CheckResponse, error) {
	var out CheckResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/check", code, &out)
}

// Migrate moves a run to new code if the replay check passes.
func (c *Client) Migrate(ctx context.Context, id string, code CodeRequest) (*CheckResponse, error) {
	var out CheckResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/migrate", code, &out)
}

// Fork starts a fork of a run.
func (c *Client) Fork(ctx context.Context, id string, req ForkRequest) (*RunResponse, error) {
	var out RunResponse
	return &out, c.do(ctx, http.MethodPost, "/v1/runs/"+url.PathEscape(id)+"/fork", req, &out)
}
