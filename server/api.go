package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/starflow/starflow/internal/errtext"
	"github.com/starflow/starflow/internal/view"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// StartRequest is the body of POST /v1/runs. Give either Script (a path
// inside the server's script directory) or Sources with Entry (the files
// themselves), or Source alone (one inline file).
type StartRequest struct {
	ID         string             `json:"id,omitempty"`
	Script     string             `json:"script,omitempty"`
	Source     string             `json:"source,omitempty"`
	Sources    map[string]string  `json:"sources,omitempty"`
	Entry      string             `json:"entry,omitempty"`
	Input      json.RawMessage    `json:"input,omitempty"`
	Durability journal.Durability `json:"durability,omitempty"`
	Limits     *journal.Limits    `json:"limits,omitempty"`
	Dialect    *journal.Dialect   `json:"dialect,omitempty"`
	// Wait, if set, is how long the request waits for the run to finish or
	// start waiting before answering (a duration such as "30s").
	Wait string `json:"wait,omitempty"`
}

// RunResponse is a run as the API returns it.
type RunResponse struct {
	view.Run
	Question *view.Question `json:"question,omitempty"`
	Active   bool           `json:"active"`  // executing in the server now
	Queued   bool           `json:"queued"`  // waiting for a worker
	Existed  bool           `json:"existed"` // a start request found the run already there
	Notes    []string       `json:"notes,omitempty"`
}

// ListResponse is the answer to GET /v1/runs.
type ListResponse struct {
	Runs []*journal.Run `json:"runs"`
	// Corrupt names the runs the store could not read; the others are in
	// Runs.
	Corrupt []CorruptRun `json:"corrupt,omitempty"`
}

// CorruptRun is a run whose metadata or journal start is damaged.
type CorruptRun struct {
	ID     string `json:"id"`
	Seq    uint64 `json:"seq,omitempty"`
	Reason string `json:"reason"`
}

// MessageRequest is the body of answer and signal requests.
type MessageRequest struct {
	Value json.RawMessage `json:"value"`
	By    string          `json:"by,omitempty"`
}

// MessageResponse says what became of an answer or a signal.
type MessageResponse struct {
	Seq  uint64 `json:"seq"`
	Woke bool   `json:"woke"` // the message ended the run's wait; the run is resuming
}

// CancelRequest is the body of POST /v1/runs/{id}/cancel.
type CancelRequest struct {
	By string `json:"by,omitempty"`
}

// CodeRequest names code for check and migrate: the entry file and every
// file it loads.
type CodeRequest struct {
	Entry   string            `json:"entry"`
	Sources map[string]string `json:"sources"`
}

// CheckResponse is the outcome of a replay check.
type CheckResponse struct {
	OK         bool   `json:"ok"`
	Replayed   int    `json:"replayed"`
	Journaled  int    `json:"journaled"`
	Summary    string `json:"summary"`
	Divergence bool   `json:"divergence"`
}

// ForkRequest is the body of POST /v1/runs/{id}/fork.
type ForkRequest struct {
	ID        string            `json:"id,omitempty"`
	At        int               `json:"at"`
	SetResult json.RawMessage   `json:"set_result,omitempty"`
	Entry     string            `json:"entry,omitempty"`
	Sources   map[string]string `json:"sources,omitempty"`
	Wait      string            `json:"wait,omitempty"`
}

// ErrorBody is every error response: {"error": {"code": ..., "message": ...}}.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// APIError is an API failure.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code) }

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Handler returns the API handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request) (any, int, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, status, err := h(w, r)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			writeJSON(w, status, v)
		})
	}
	handle("POST /v1/runs", s.startRun)
	handle("GET /v1/runs", s.listRuns)
	handle("GET /v1/runs/{id}", s.getRun)
	handle("GET /v1/runs/{id}/history", s.history)
	handle("GET /v1/runs/{id}/wait", s.waitRun)
	handle("POST /v1/runs/{id}/answer", s.answer)
	handle("POST /v1/runs/{id}/signals/{name}", s.signal)
	handle("POST /v1/runs/{id}/cancel", s.cancel)
	handle("POST /v1/runs/{id}/resume", s.resume)
	handle("POST /v1/runs/{id}/retry", s.retry)
	handle("POST /v1/runs/{id}/check", s.check)
	handle("POST /v1/runs/{id}/migrate", s.migrate)
	handle("POST /v1/runs/{id}/fork", s.fork)
	handle("GET /v1/health", s.health)
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics.handler())
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, apiErr(http.StatusNotFound, "not_found", "no such endpoint: %s %s (see spec/api.md)", r.Method, r.URL.Path))
	})
	return s.secure(mux)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	var ie *runtime.InvalidError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &mb):
		ae = tooLarge(mb.Limit)
	case errors.As(err, &ie):
		switch ie.Code {
		case runtime.CodeNotFound:
			ae = apiErr(http.StatusNotFound, "not_found", "%s", ie.Error())
		case runtime.CodeConflict:
			ae = apiErr(http.StatusConflict, "conflict", "%s", ie.Error())
		case runtime.CodeRejected:
			ae = apiErr(http.StatusUnprocessableEntity, "rejected", "%s", ie.Error())
		default:
			ae = apiErr(http.StatusBadRequest, "invalid_request", "%s", ie.Error())
		}
	case errors.Is(err, journal.ErrNotFound):
		ae = apiErr(http.StatusNotFound, "not_found", "%s", err.Error())
	case errors.Is(err, runtime.ErrBusy):
		ae = apiErr(http.StatusConflict, "conflict", "%s", err.Error())
	default:
		msg := errtext.Of(err) // no dumps of journal data (some store errors carry them)
		s.log.Error().Str("error", msg).Str("path", r.URL.Path).Msg("request failed")
		ae = apiErr(http.StatusInternalServerError, "internal", "%s", msg)
	}
	writeJSON(w, ae.Status, ErrorBody{Error: *ae})
}

// decode reads a JSON body strictly: size-limited, no unknown fields, one
// value.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return apiErr(http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json, not %s", ct)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return apiErr(http.StatusBadRequest, "invalid_request", "request body is empty; send a JSON object")
		}
		return apiErr(http.StatusBadRequest, "invalid_request", "invalid JSON body: %v", err)
	}
	if dec.More() {
		return apiErr(http.StatusBadRequest, "invalid_request", "request body holds more than one JSON value")
	}
	return nil
}

func (s *Server) runResponse(ctx context.Context, id string) (*RunResponse, error) {
	meta, err := s.store.Run(ctx, id)
	if err != nil {
		if errors.Is(err, journal.ErrNotFound) {
			return nil, apiErr(http.StatusNotFound, "not_found", "no run with id %s", id)
		}
		return nil, err
	}
	recs, err := s.store.Records(ctx, id, 1)
	if err != nil {
		return nil, err
	}
	resp := &RunResponse{Run: view.Of(meta, recs)}
	if p, err := s.rt.Progress(ctx, id); err == nil && p != nil {
		resp.Progress = p
	}
	resp.Question = view.QuestionOf(meta.Waiting)
	for _, a := range s.rt.Active() {
		if a == id {
			resp.Active = true
		}
	}
	resp.Queued = !resp.Active && s.queue.isQueued(id)
	return resp, nil
}

func (s *Server) startRun(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var req StartRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, 0, err
	}
	if len(req.Input) > MaxInputBytes {
		return nil, 0, apiErr(http.StatusRequestEntityTooLarge, "too_large", "the input is %d bytes, over the limit of %d bytes (%s) on run inputs; pass large data by reference (a path or URL the script reads)", len(req.Input), MaxInputBytes, sizeString(MaxInputBytes))
	}
	sr := runtime.StartRequest{ID: req.ID, Input: req.Input, Durability: req.Durability}
	if req.Limits != nil {
		sr.Limits = *req.Limits
	}
	if req.Dialect != nil {
		sr.Dialect = *req.Dialect
	}
	switch {
	case req.Script != "" && (req.Source != "" || req.Sources != nil):
		return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "give script (a path) or source/sources (the code), not both")
	case req.Script != "":
		full, err := s.resolveScript(req.Script)
		if err != nil {
			return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "%v", err)
		}
		sr.Script = full
	case req.Sources != nil:
		if err := s.inlineAllowed("sources"); err != nil {
			return nil, 0, err
		}
		if req.Entry == "" {
			return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "sources needs entry: the name of the file that defines main")
		}
		sr.Script = req.Entry
		sr.Sources = map[string][]byte{}
		for k, v := range req.Sources {
			sr.Sources[runtime.ScriptName(k)] = []byte(v)
		}
	case req.Source != "":
		if err := s.inlineAllowed("source"); err != nil {
			return nil, 0, err
		}
		sr.Script = req.Entry
		if sr.Script == "" {
			sr.Script = "inline.star"
		}
		sr.Sources = map[string][]byte{runtime.ScriptName(sr.Script): []byte(req.Source)}
	default:
		return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "a start request needs script, source or sources")
	}
	var wait time.Duration
	if req.Wait != "" {
		d, err := time.ParseDuration(req.Wait)
		if err != nil || d < 0 || d > 10*time.Minute {
			return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "wait must be a duration between 0 and 10m, such as \"30s\"")
		}
		wait = d
	}
	out, err := s.rt.Create(r.Context(), sr)
	if err != nil {
		return nil, 0, err
	}
	// A new or interrupted run executes now; a waiting one goes on when its
	// timer, answer or signal comes, not because it was started again.
	if out.Status == journal.StatusRunning {
		var ch chan struct{}
		if wait > 0 {
			ch = s.watch.watch(out.ID)
		}
		s.enqueue(out.ID)
		if wait > 0 {
			s.waitFor(r.Context(), out.ID, ch, wait, journal.StatusRunning)
		}
	}
	resp, err := s.runResponse(r.Context(), out.ID)
	if err != nil {
		return nil, 0, err
	}
	resp.Existed, resp.Notes = out.Existed, out.Notes
	status := http.StatusCreated
	if out.Existed {
		status = http.StatusOK
	}
	return resp, status, nil
}

// waitFor waits until the run's status is no longer while (and it is not
// queued or executing), or the wait is over. ch is a channel from watch;
// waitFor removes what it watched when it returns.
func (s *Server) waitFor(ctx context.Context, id string, ch chan struct{}, wait time.Duration, while journal.Status) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	defer func() { s.watch.unwatch(id, ch) }()
	for {
		select {
		case <-ch:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
		ch = s.watch.watch(id)
		meta, err := s.store.Run(ctx, id)
		if err != nil || (meta.Status != while && !s.queue.isQueued(id)) {
			return
		}
	}
}

// waitRun is GET /v1/runs/{id}/wait?timeout=30s&status=running: it answers
// when the run's status is no longer the given one (default running), or
// when the timeout passes.
func (s *Server) waitRun(w http.ResponseWriter, r *http.Request) (any, int, error) {
	id := r.PathValue("id")
	wait := 30 * time.Second
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < 0 || d > 10*time.Minute {
			return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "timeout must be a duration between 0 and 10m, such as \"30s\"")
		}
		wait = d
	}
	while := journal.StatusRunning
	if st := r.URL.Query().Get("status"); st != "" {
		var err error
		if while, err = journal.ParseStatus(st); err != nil {
			return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "%v", err)
		}
	}
	if _, err := s.store.Run(r.Context(), id); err != nil {
		return nil, 0, err // no watcher for a run that does not exist
	}
	// Watch, then look: a change after the look closes the channel.
	ch := s.watch.watch(id)
	meta, err := s.store.Run(r.Context(), id)
	if err != nil {
		s.watch.unwatch(id, ch)
		return nil, 0, err
	}
	if meta.Status == while || s.queue.isQueued(id) {
		s.waitFor(r.Context(), id, ch, wait, while)
	} else {
		s.watch.unwatch(id, ch)
	}
	resp, err := s.runResponse(r.Context(), id)
	return resp, http.StatusOK, err
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) (any, int, error) {
	resp, err := s.runResponse(r.Context(), r.PathValue("id"))
	return resp, http.StatusOK, err
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var f journal.Filter
	if st := r.URL.Query().Get("status"); st != "" {
		for _, p := range strings.Split(st, ",") {
			status, err := journal.ParseStatus(strings.TrimSpace(p))
			if err != nil {
				return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "%v", err)
			}
			f.Status = append(f.Status, status)
		}
	}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "limit must be a non-negative integer")
		}
		f.Limit = n
	}
	runs, err := s.store.List(r.Context(), f)
	var bad *journal.CorruptRunsError
	if err != nil && !errors.As(err, &bad) {
		return nil, 0, err
	}
	if runs == nil {
		runs = []*journal.Run{}
	}
	resp := ListResponse{Runs: runs}
	if bad != nil {
		// One damaged run does not hide the others: they are listed, and
		// the damaged ones named.
		for _, c := range bad.Runs {
			resp.Corrupt = append(resp.Corrupt, CorruptRun{ID: c.RunID, Seq: c.Seq, Reason: c.Reason})
		}
	}
	return resp, http.StatusOK, nil
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) (any, int, error) {
	id := r.PathValue("id")
	if _, err := s.store.Run(r.Context(), id); err != nil {
		if errors.Is(err, journal.ErrNotFound) {
			return nil, 0, apiErr(http.StatusNotFound, "not_found", "no run with id %s", id)
		}
		return nil, 0, err
	}
	recs, err := s.store.Records(r.Context(), id, 1)
	if err != nil {
		return nil, 0, err
	}
	evs, err := view.Events(recs)
	if err != nil {
		return nil, 0, err
	}
	return map[string]any{"events": evs}, http.StatusOK, nil
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, kind, name string) (any, int, error) {
	var req MessageRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, 0, err
	}
	if len(req.Value) == 0 {
		return nil, 0, apiErr(http.StatusBadRequest, "invalid_request", "value is required (use null for no value)")
	}
	id := r.PathValue("id")
	by := req.By
	if by == "" {
		by = "api"
	}
	d, err := s.rt.Send(r.Context(), id, journal.Message{Kind: kind, Name: name, Value: req.Value, From: by})
	if err != nil {
		return nil, 0, err
	}
	if d.Resume {
		// Not executing here, and the message ends its wait. (A run
		// executing here acts on the message by itself.)
		s.enqueue(id)
	}
	status := http.StatusOK
	if kind == journal.MessageSignal {
		status = http.StatusAccepted
	}
	return MessageResponse{Seq: d.Message.Seq, Woke: d.Ends}, status, nil
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return s.send(w, r, journal.MessageAnswer, "")
}

func (s *Server) signal(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return s.send(w, r, journal.MessageSignal, r.PathValue("name"))
}

// by reads who asks, from an optional {"by": ...} body (default "api").
func (s *Server) by(w http.ResponseWriter, r *http.Request) (string, error) {
	var req CancelRequest
	if r.ContentLength != 0 {
		if err := s.decode(w, r, &req); err != nil {
			return "", err
		}
	}
	if req.By == "" {
		return "api", nil
	}
	return req.By, nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) (any, int, error) {
	by, err := s.by(w, r)
	if err != nil {
		return nil, 0, err
	}
	id := r.PathValue("id")
	if _, err := s.rt.Cancel(r.Context(), id, by); err != nil {
		return nil, 0, err
	}
	s.timers.remove(id)
	s.watch.notify(id)
	resp, err := s.runResponse(r.Context(), id)
	return resp, http.StatusOK, err
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) (any, int, error) {
	id := r.PathValue("id")
	meta, err := s.store.Run(r.Context(), id)
	if err != nil {
		return nil, 0, err
	}
	if meta.Status.Final() {
		return nil, 0, apiErr(http.StatusConflict, "conflict", "run %s is %s", id, meta.Status)
	}
	s.enqueue(id)
	resp, err := s.runResponse(r.Context(), id)
	return resp, http.StatusAccepted, err
}

// retry is POST /v1/runs/{id}/retry: release a quarantined run and
// execute it again.
func (s *Server) retry(w http.ResponseWriter, r *http.Request) (any, int, error) {
	by, err := s.by(w, r)
	if err != nil {
		return nil, 0, err
	}
	id := r.PathValue("id")
	if _, err := s.rt.Retry(r.Context(), id, by); err != nil {
		return nil, 0, err
	}
	s.enqueue(id)
	resp, err := s.runResponse(r.Context(), id)
	return resp, http.StatusAccepted, err
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) (any, int, error) {
	queued, running := s.queue.stats()
	return map[string]any{
		"status":    "ok",
		"executing": running,
		"queued":    queued,
		"timers":    s.timers.len(),
		"watchers":  s.watch.len(),
	}, http.StatusOK, nil
}

func (r *CodeRequest) files() (map[string][]byte, error) {
	if r.Entry == "" || len(r.Sources) == 0 {
		return nil, apiErr(http.StatusBadRequest, "invalid_request", "give entry and sources: the new code")
	}
	out := map[string][]byte{}
	for k, v := range r.Sources {
		out[runtime.ScriptName(k)] = []byte(v)
	}
	return out, nil
}

func checkResponse(rep *runtime.CheckReport) CheckResponse {
	return CheckResponse{OK: rep.OK, Replayed: rep.Replayed, Journaled: rep.Journaled, Summary: rep.Summary(), Divergence: rep.Divergence != nil}
}

func (s *Server) check(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var req CodeRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, 0, err
	}
	files, err := req.files()
	if err != nil {
		return nil, 0, err
	}
	rep, err := s.rt.Check(r.Context(), r.PathValue("id"), req.Entry, files)
	if err != nil {
		return nil, 0, err
	}
	return checkResponse(rep), http.StatusOK, nil
}

func (s *Server) migrate(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var req CodeRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, 0, err
	}
	if err := s.inlineAllowed("the new code of a migration"); err != nil {
		return nil, 0, err
	}
	files, err := req.files()
	if err != nil {
		return nil, 0, err
	}
	id := r.PathValue("id")
	rep, err := s.rt.Migrate(r.Context(), id, req.Entry, files)
	if errors.Is(err, runtime.ErrCheckFailed) {
		return nil, 0, apiErr(http.StatusConflict, "check_failed", "%s", rep.Summary())
	}
	if err != nil {
		return nil, 0, err
	}
	s.enqueue(id)
	return checkResponse(rep), http.StatusOK, nil
}

func (s *Server) fork(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var req ForkRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, 0, err
	}
	fr := runtime.ForkRequest{ID: req.ID, At: req.At, SetResult: req.SetResult}
	if len(req.Sources) > 0 {
		if err := s.inlineAllowed("the new code of a fork"); err != nil {
			return nil, 0, err
		}
		code := CodeRequest{Entry: req.Entry, Sources: req.Sources}
		files, err := code.files()
		if err != nil {
			return nil, 0, err
		}
		fr.Script, fr.Sources = req.Entry, files
	}
	out, err := s.rt.Fork(r.Context(), r.PathValue("id"), fr)
	if err != nil {
		return nil, 0, err
	}
	var wait time.Duration
	if req.Wait != "" {
		if d, err := time.ParseDuration(req.Wait); err == nil && d > 0 && d <= 10*time.Minute {
			wait = d
		}
	}
	var ch chan struct{}
	if wait > 0 {
		ch = s.watch.watch(out.ID)
	}
	s.enqueue(out.ID)
	if wait > 0 {
		s.waitFor(r.Context(), out.ID, ch, wait, journal.StatusRunning)
	}
	resp, err := s.runResponse(r.Context(), out.ID)
	return resp, http.StatusCreated, err
}
