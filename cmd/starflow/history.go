package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "history", summary: "print a run's journal, one event a line", run: (*Main).cmdHistory})
}

// event is one line of `history --json`.
type event struct {
	Seq      uint64             `json:"seq"`
	Time     time.Time          `json:"time"`
	Type     string             `json:"type"`
	Step     string             `json:"step,omitempty"`
	Builtin  string             `json:"builtin,omitempty"`
	Args     json.RawMessage    `json:"args,omitempty"`
	Key      string             `json:"key,omitempty"`
	Pos      string             `json:"pos,omitempty"`
	Result   json.RawMessage    `json:"result,omitempty"`
	Error    any                `json:"error,omitempty"`
	Attempts []journal.Attempt  `json:"attempts,omitempty"`
	Detail   json.RawMessage    `json:"detail,omitempty"`
	Duration *float64           `json:"duration_ms,omitempty"`
	Until    *time.Time         `json:"until,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	Status   journal.Status     `json:"status,omitempty"`
	Message  string             `json:"message,omitempty"`
	Level    string             `json:"level,omitempty"`
	Fields   json.RawMessage    `json:"fields,omitempty"`
	Input    json.RawMessage    `json:"input,omitempty"`
	Script   *journal.Manifest  `json:"script,omitempty"`
	Durab    journal.Durability `json:"durability,omitempty"`
	PID      int                `json:"pid,omitempty"`
	By       string             `json:"cancelled_by,omitempty"`
}

func events(recs []journal.Record) ([]event, error) {
	builtinOf := map[string]string{}
	out := make([]event, 0, len(recs))
	for _, r := range recs {
		ev := event{Seq: r.Seq, Time: r.Time, Type: r.Type.String()}
		var err error
		switch r.Type {
		case journal.TypeRunStarted:
			var p journal.RunStarted
			err = r.Decode(&p)
			ev.Input, ev.Script, ev.Durab = p.Input, &p.Script, p.Durability
		case journal.TypeCallStarted:
			var p journal.CallStarted
			err = r.Decode(&p)
			builtinOf[p.Step] = p.Builtin
			ev.Step, ev.Builtin, ev.Args, ev.Key, ev.Pos = p.Step, p.Builtin, p.Args, p.Key, p.Pos
		case journal.TypeCallWaiting:
			var p journal.CallWaiting
			err = r.Decode(&p)
			ev.Step, ev.Builtin, ev.Until, ev.Reason, ev.Detail = p.Step, builtinOf[p.Step], p.Until, p.Reason, p.Data
		case journal.TypeCallCompleted:
			var p journal.CallCompleted
			err = r.Decode(&p)
			ms := float64(p.Duration) / float64(time.Millisecond)
			ev.Step, ev.Builtin, ev.Result, ev.Attempts, ev.Detail, ev.Duration = p.Step, builtinOf[p.Step], p.Result, p.Attempts, p.Detail, &ms
			if p.Error != nil {
				ev.Error = p.Error
			}
		case journal.TypeLog:
			var p journal.Log
			err = r.Decode(&p)
			ev.Message, ev.Level, ev.Fields, ev.Pos = p.Message, p.Level, p.Fields, p.Pos
		case journal.TypeRunResumed:
			var p journal.RunResumed
			err = r.Decode(&p)
			ev.PID = p.PID
		case journal.TypeRunFinished:
			var p journal.RunFinished
			err = r.Decode(&p)
			ev.Status, ev.Result, ev.By = p.Status, p.Result, p.CancelledBy
			if p.Error != nil {
				ev.Error = p.Error
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

func (m *Main) cmdHistory(ctx context.Context, args []string) int {
	var c common
	var asJSON bool
	fs := m.newFlagSet("history", "history ID [--json] [--db DIR]")
	c.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON lines: seq, type, step, builtin, args, result or error, ...")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow history: want exactly one run ID")
		fs.Usage()
		return ExitUsage
	}
	e, code := m.open(&c, "history", runtime.Options{})
	if e == nil {
		return code
	}
	defer e.Close()
	_, recs, code := m.loadRun(ctx, e, pos[0])
	if recs == nil {
		return code
	}
	evs, err := events(recs)
	if err != nil {
		return m.exitForError(err)
	}
	if asJSON {
		enc := json.NewEncoder(m.Stdout)
		for _, ev := range evs {
			enc.Encode(ev)
		}
		return ExitOK
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tSTEP\tDETAIL")
	for _, ev := range evs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Time.Local().Format("15:04:05.000"), ev.Type, ev.Step, detail(ev))
	}
	tw.Flush()
	return ExitOK
}

func detail(ev event) string {
	clip := func(s string, n int) string {
		if len(s) > n {
			return s[:n-3] + "..."
		}
		return s
	}
	switch ev.Type {
	case "run.started":
		return fmt.Sprintf("%s input=%s durability=%s", ev.Script.Entry, clip(string(ev.Input), 60), ev.Durab)
	case "call.started":
		args := strings.TrimSuffix(strings.TrimPrefix(string(ev.Args), "["), "]")
		return fmt.Sprintf("%s(%s) at %s key=%s", ev.Builtin, clip(args, 60), ev.Pos, ev.Key)
	case "call.waiting":
		return fmt.Sprintf("%s waiting: %s", ev.Builtin, ev.Reason)
	case "call.completed":
		d := time.Duration(*ev.Duration * float64(time.Millisecond)).Round(time.Microsecond)
		att := ""
		if len(ev.Attempts) > 1 {
			att = fmt.Sprintf(" after %d attempts", len(ev.Attempts))
		}
		if ce, ok := ev.Error.(*journal.CallError); ok {
			return fmt.Sprintf("%s error (%s): %s%s %s", ev.Builtin, ce.Kind, clip(ce.Message, 80), att, d)
		}
		return fmt.Sprintf("%s ok %s%s %s", ev.Builtin, clip(string(ev.Result), 70), att, d)
	case "log":
		s := ev.Level + " " + ev.Message
		if len(ev.Fields) > 0 {
			s += " " + clip(string(ev.Fields), 60)
		}
		return s
	case "run.resumed":
		return fmt.Sprintf("pid %d", ev.PID)
	case "run.finished":
		if re, ok := ev.Error.(*journal.RunError); ok {
			return fmt.Sprintf("%s: %s", ev.Status, clip(oneLine(re.Error()), 100))
		}
		return fmt.Sprintf("%s %s", ev.Status, clip(string(ev.Result), 80))
	}
	return ""
}
