package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "show", summary: "show a run's status, result or error, and what it waits on", run: (*Main).cmdShow})
}

// runView is `show --json`.
type runView struct {
	ID         string             `json:"id"`
	Status     journal.Status     `json:"status"`
	Result     json.RawMessage    `json:"result"`
	Error      *journal.RunError  `json:"error"`
	Waiting    *journal.Waiting   `json:"waiting,omitempty"`
	Script     string             `json:"script"`
	ScriptHash string             `json:"script_hash"`
	Durability journal.Durability `json:"durability"`
	CreatedAt  time.Time          `json:"created_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
	Calls      callCounts         `json:"calls"`
	Records    int                `json:"records"`
	Resumes    int                `json:"resumes"`
}

type callCounts struct {
	Total     int `json:"total"`     // calls started
	Completed int `json:"completed"` // with a result
	Failed    int `json:"failed"`    // with an error
	Retried   int `json:"retried"`   // that needed more than one attempt
	InFlight  int `json:"in_flight"` // started, neither completed nor waiting
	Waiting   int `json:"waiting"`
}

func viewOf(meta *journal.Run, recs []journal.Record) runView {
	v := runView{ID: meta.ID, Status: meta.Status, Result: meta.Result, Error: meta.Error, Waiting: meta.Waiting,
		Script: meta.Script, ScriptHash: meta.ScriptHash, Durability: meta.Durability,
		CreatedAt: meta.CreatedAt, UpdatedAt: meta.UpdatedAt, FinishedAt: meta.FinishedAt, Records: len(recs)}
	if v.Result == nil {
		v.Result = json.RawMessage("null")
	}
	open := map[string]bool{}
	waiting := map[string]bool{}
	for _, r := range recs {
		switch r.Type {
		case journal.TypeCallStarted:
			var cs journal.CallStarted
			r.Decode(&cs)
			v.Calls.Total++
			open[cs.Step] = true
		case journal.TypeCallWaiting:
			var cw journal.CallWaiting
			r.Decode(&cw)
			waiting[cw.Step] = true
		case journal.TypeCallCompleted:
			var cc journal.CallCompleted
			r.Decode(&cc)
			delete(open, cc.Step)
			delete(waiting, cc.Step)
			if cc.Error != nil {
				v.Calls.Failed++
			} else {
				v.Calls.Completed++
			}
			if len(cc.Attempts) > 1 {
				v.Calls.Retried++
			}
		case journal.TypeRunResumed:
			v.Resumes++
		}
	}
	v.Calls.Waiting = len(waiting)
	v.Calls.InFlight = len(open) - len(waiting)
	return v
}

func (m *Main) cmdShow(ctx context.Context, args []string) int {
	var c common
	var asJSON bool
	fs := m.newFlagSet("show", "show ID [--json] [--db DIR]")
	c.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow show: want exactly one run ID")
		fs.Usage()
		return ExitUsage
	}
	e, code := m.open(&c, "show", runtime.Options{})
	if e == nil {
		return code
	}
	defer e.Close()
	meta, recs, code := m.loadRun(ctx, e, pos[0])
	if meta == nil {
		return code
	}
	v := viewOf(meta, recs)
	if asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(m.Stdout, string(b))
		return ExitOK
	}
	m.printView(fs, v)
	return ExitOK
}

func (m *Main) loadRun(ctx context.Context, e *env, id string) (*journal.Run, []journal.Record, int) {
	meta, err := e.store.Run(ctx, id)
	if err != nil {
		if errorsIsNotFound(err) {
			fmt.Fprintf(m.Stderr, "starflow: no run with id %s in %s\n", id, e.store.Dir())
			return nil, nil, ExitUsage
		}
		return nil, nil, m.exitForError(err)
	}
	recs, err := e.store.Records(ctx, id, 1)
	if err != nil {
		return nil, nil, m.exitForError(err)
	}
	return meta, recs, ExitOK
}

func (m *Main) printView(_ *flag.FlagSet, v runView) {
	w := m.Stdout
	status := string(v.Status)
	if v.Status == journal.StatusRunning {
		status += fmt.Sprintf(" (interrupted: no process is executing it; continue with: starflow resume %s)", v.ID)
	}
	fmt.Fprintf(w, "run         %s\n", v.ID)
	fmt.Fprintf(w, "status      %s\n", status)
	fmt.Fprintf(w, "script      %s (%s)\n", v.Script, short(v.ScriptHash))
	fmt.Fprintf(w, "durability  %s\n", v.Durability)
	fmt.Fprintf(w, "created     %s\n", v.CreatedAt.Local().Format(time.DateTime+" MST"))
	fmt.Fprintf(w, "updated     %s\n", v.UpdatedAt.Local().Format(time.DateTime+" MST"))
	if v.FinishedAt != nil {
		fmt.Fprintf(w, "finished    %s (took %s)\n", v.FinishedAt.Local().Format(time.DateTime+" MST"), v.FinishedAt.Sub(v.CreatedAt).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "calls       %d started, %d completed, %d failed, %d retried, %d waiting, %d in flight\n",
		v.Calls.Total, v.Calls.Completed, v.Calls.Failed, v.Calls.Retried, v.Calls.Waiting, v.Calls.InFlight)
	if v.Resumes > 0 {
		fmt.Fprintf(w, "resumed     %d times\n", v.Resumes)
	}
	if v.Waiting != nil {
		fmt.Fprintf(w, "waiting     %s in %s at %s\n", v.Waiting.Reason, v.Waiting.Builtin, v.Waiting.Pos)
		if v.Waiting.Until != nil {
			fmt.Fprintf(w, "due         %s\n", v.Waiting.Until.Local().Format(time.DateTime+" MST"))
		}
		if len(v.Waiting.Data) > 0 {
			fmt.Fprintf(w, "details     %s\n", v.Waiting.Data)
		}
	}
	if v.Status == journal.StatusCompleted {
		fmt.Fprintf(w, "result      %s\n", v.Result)
	}
	if v.Error != nil {
		fmt.Fprintf(w, "error       %s\n", oneLine(v.Error.Error()))
	}
}

func short(h string) string {
	if len(h) > 19 {
		return h[:19]
	}
	return h
}
