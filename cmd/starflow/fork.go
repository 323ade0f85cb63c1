package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

func init() {
	register(command{name: "fork", summary: "start a new run from a run's journal up to a call", run: (*Main).cmdFork})
}

func (m *Main) cmdFork(ctx context.Context, args []string) int {
	var (
		f         execFlags
		at        int
		setResult string
		script    string
		newID     string
	)
	fs := f.register(m, "fork", "fork ID --at STEP [--set-result JSON] [--script NEW.star] [--id NEWID] [--db DIR]")
	fs.IntVar(&at, "at", -1, "keep calls 1..STEP (the #STEP of progress lines and history) and continue live after it (required)")
	fs.StringVar(&setResult, "set-result", "", "replace call STEP's result with this JSON (an object is merged into a struct or dict result)")
	fs.StringVar(&script, "script", "", "run the fork on this script instead of the original's code")
	fs.StringVar(&newID, "id", "", "the fork's run ID (default: a new time-sortable ID)")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || at < 0 {
		fmt.Fprintln(m.Stderr, "starflow fork: want a run ID and --at STEP")
		fs.Usage()
		return ExitUsage
	}
	var set []byte
	if setResult != "" {
		raw, err := m.readInput(setResult)
		if err != nil {
			fmt.Fprintln(m.Stderr, "starflow fork: --set-result:", err)
			return ExitUsage
		}
		set = raw
	}
	e, cl, code := m.session(&f.common, "fork", f.options())
	if cl != nil {
		req := server.ForkRequest{ID: newID, At: at, SetResult: set, Wait: "1m"}
		if script != "" {
			cr, err := codeRequest(script)
			if err != nil {
				fmt.Fprintln(m.Stderr, "starflow fork:", err)
				return ExitUsage
			}
			req.Entry, req.Sources = cr.Entry, cr.Sources
		}
		r, err := cl.Fork(ctx, pos[0], req)
		if err != nil {
			return m.remoteExit(err)
		}
		fmt.Fprintf(m.Stderr, "starflow: fork %s of run %s at call %d\n", r.ID, pos[0], at)
		return m.awaitRemote(ctx, cl, r, f.maxInlineWait)
	}
	if e == nil {
		return code
	}
	defer e.Close()
	out, err := e.rt.Fork(ctx, pos[0], runtime.ForkRequest{ID: newID, At: at, SetResult: set, Script: script})
	if err != nil {
		if errors.Is(err, runtime.ErrInvalid) {
			fmt.Fprintln(m.Stderr, "starflow fork:", err)
			return ExitUsage
		}
		return m.exitForError(err)
	}
	fmt.Fprintf(m.Stderr, "starflow: fork %s of run %s at call %d\n", out.ID, pos[0], at)
	res, err := e.rt.Resume(ctx, out.ID)
	return m.report(out.ID, res, err)
}
