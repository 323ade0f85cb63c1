package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/starflow/starflow/internal/errtext"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

// session opens the store for a command, or, when `starflow serve` owns it,
// returns a client for the server's API (found in the store's owner file),
// so that a user never meets the store lock while a server runs.
func (m *Main) session(c *common, command string, opts runtime.Options) (*env, *server.Client, int) {
	e, code := m.open(c, command, opts)
	if e != nil {
		return e, nil, 0
	}
	if m.lastLocked != nil && m.lastLocked.Addr != "" {
		return nil, server.NewClient(m.lastLocked.Addr, m.Getenv("STARFLOW_TOKEN")), 0
	}
	return nil, nil, code
}

// remoteExit prints an API error and maps it to an exit code.
func (m *Main) remoteExit(err error) int {
	fmt.Fprintln(m.Stderr, "starflow:", errtext.Of(err))
	var ae *server.APIError
	if errors.As(err, &ae) {
		if ae.Code == "check_failed" {
			return ExitDiverged
		}
		switch ae.Status {
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
			return ExitUsage
		}
	}
	return ExitStore
}

// outcomeOf turns an API run into the outcome report() prints.
func outcomeOf(r *server.RunResponse) *runtime.Outcome {
	return &runtime.Outcome{ID: r.ID, Status: r.Status, Result: r.Result, Error: r.Error, Waiting: r.Waiting, Existed: r.Existed, Notes: r.Notes}
}

// awaitRemote waits for a run executing in the server to finish or to
// start a wait longer than maxWait, then reports it like a local run.
func (m *Main) awaitRemote(ctx context.Context, cl *server.Client, r *server.RunResponse, maxWait time.Duration) int {
	for {
		near := r.Status == journal.StatusWaiting && r.Waiting != nil && r.Waiting.Until != nil && time.Until(*r.Waiting.Until) <= maxWait
		if r.Status != journal.StatusRunning && !near && !r.Queued && !r.Active {
			break
		}
		id := r.ID
		var err error
		r, err = cl.WaitWhile(ctx, id, r.Status, 5*time.Minute)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(m.Stderr, "starflow: stopped waiting; run %s goes on in the server (starflow show %s)\n", id, id)
				return ExitInterrupted
			}
			return m.remoteExit(err)
		}
	}
	if r.Status == journal.StatusCompleted && r.Result == nil {
		r.Result = json.RawMessage("null")
	}
	return m.report(r.ID, outcomeOf(r), nil)
}
