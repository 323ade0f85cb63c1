package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/starflow/starflow/internal/view"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "show", summary: "show a run's status, result or error, and what it waits on", run: (*Main).cmdShow})
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
	e, cl, code := m.session(&c, "show", runtime.Options{})
	if cl != nil {
		r, err := cl.Get(ctx, pos[0])
		if err != nil {
			return m.remoteExit(err)
		}
		if asJSON {
			b, _ := json.MarshalIndent(r, "", "  ")
			fmt.Fprintln(m.Stdout, string(b))
			return ExitOK
		}
		m.printView(r.Run, r.Active || r.Queued)
		return ExitOK
	}
	if e == nil {
		return code
	}
	defer e.Close()
	meta, recs, code := m.loadRun(ctx, e, pos[0])
	if meta == nil {
		return code
	}
	v := view.Of(meta, recs)
	if asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(m.Stdout, string(b))
		return ExitOK
	}
	m.printView(v, false)
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

// printView prints a run for people. executing says a server is running it.
func (m *Main) printView(v view.Run, executing bool) {
	w := m.Stdout
	status := string(v.Status)
	switch {
	case v.Status == journal.StatusRunning && executing:
		status += " (executing in the server)"
	case v.Status == journal.StatusRunning && v.Executing != nil:
		status += fmt.Sprintf(" (interrupted: process %d died while executing it", v.Executing.PID)
		if v.Executing.Host != "" {
			status += " on " + v.Executing.Host
		}
		status += fmt.Sprintf("; continue with: starflow resume %s)", v.ID)
	case v.Status == journal.StatusRunning:
		status += fmt.Sprintf(" (interrupted: no process is executing it; continue with: starflow resume %s)", v.ID)
	case v.Status == journal.StatusQuarantined:
		status += fmt.Sprintf(" (set aside after %d crashes; run it again with: starflow retry %s)", v.Crashes, v.ID)
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
	if v.Origin != nil {
		fmt.Fprintf(w, "forked from %s at call %d", v.Origin.Run, v.Origin.At)
		if v.Origin.SetResult {
			fmt.Fprint(w, " (with that call's result replaced)")
		}
		fmt.Fprintln(w)
	}
	if v.Resumes > 0 {
		fmt.Fprintf(w, "resumed     %d times\n", v.Resumes)
	}
	if v.Waiting != nil {
		if q := view.QuestionOf(v.Waiting); q != nil {
			fmt.Fprintf(w, "question    %s (ask_human at %s)\n", q.Prompt, v.Waiting.Pos)
			if len(q.Choices) > 0 {
				c, _ := json.Marshal(q.Choices)
				fmt.Fprintf(w, "choices     %s\n", c)
			}
			if len(q.Schema) > 0 {
				fmt.Fprintf(w, "schema      %s\n", q.Schema)
			}
			if q.Deadline != nil {
				fmt.Fprintf(w, "deadline    %s", q.Deadline.Local().Format(time.DateTime+" MST"))
				if len(q.Default) > 0 {
					fmt.Fprintf(w, " (then the default %s)", q.Default)
				}
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "answer with starflow answer %s --value JSON\n", v.ID)
		} else {
			fmt.Fprintf(w, "waiting     %s in %s at %s\n", v.Waiting.Reason, v.Waiting.Builtin, v.Waiting.Pos)
			if v.Waiting.Until != nil {
				fmt.Fprintf(w, "due         %s\n", v.Waiting.Until.Local().Format(time.DateTime+" MST"))
			}
		}
	}
	if len(v.Progress) > 0 {
		fmt.Fprintf(w, "progress    %s\n", v.Progress)
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
