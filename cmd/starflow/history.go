package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/starflow/starflow/internal/view"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "history", summary: "print a run's journal, one event a line", run: (*Main).cmdHistory})
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
	var evs []view.Event
	e, cl, code := m.session(&c, "history", runtime.Options{})
	if cl != nil {
		var err error
		if evs, err = cl.History(ctx, pos[0]); err != nil {
			return m.remoteExit(err)
		}
	} else if e == nil {
		return code
	} else {
		defer e.Close()
		_, recs, code := m.loadRun(ctx, e, pos[0])
		if recs == nil {
			return code
		}
		var err error
		if evs, err = view.Events(recs); err != nil {
			return m.exitForError(err)
		}
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

func detail(ev view.Event) string {
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
	case "run.quarantined":
		return fmt.Sprintf("after %d crashes in a row without progress", ev.Crashes)
	case "run.retried":
		return "by " + ev.Retry
	case "progress":
		return clip(string(ev.Result), 100)
	case "run.finished":
		if re, ok := ev.Error.(*journal.RunError); ok {
			return fmt.Sprintf("%s: %s", ev.Status, clip(oneLine(re.Error()), 100))
		}
		return fmt.Sprintf("%s %s", ev.Status, clip(string(ev.Result), 80))
	}
	return ""
}
