package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "resume", summary: "continue an interrupted or waiting run", run: (*Main).cmdResume})
}

func (m *Main) cmdResume(ctx context.Context, args []string) int {
	var f execFlags
	var script string
	fs := f.register(m, "resume", "resume ID [--script NEW.star] [--db DIR]")
	fs.StringVar(&script, "script", "", "move the run to this changed script first, only if a replay check passes (see starflow replay)")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow resume: want exactly one run ID")
		fs.Usage()
		return ExitUsage
	}
	e, cl, code := m.session(&f.common, "resume "+pos[0], f.options())
	if cl != nil {
		if script != "" {
			req, err := codeRequest(script)
			if err != nil {
				fmt.Fprintln(m.Stderr, "starflow resume:", err)
				return ExitUsage
			}
			rep, err := cl.Migrate(ctx, pos[0], req)
			if err != nil {
				return m.remoteExit(err)
			}
			fmt.Fprintln(m.Stderr, "starflow: moved to", script+":", rep.Summary)
		}
		r, err := cl.Get(ctx, pos[0])
		if err == nil && !r.Status.Final() {
			r, err = cl.Resume(ctx, pos[0])
		}
		if err != nil {
			return m.remoteExit(err)
		}
		return m.awaitRemote(ctx, cl, r, f.maxInlineWait)
	}
	if e == nil {
		return code
	}
	defer e.Close()
	if script != "" {
		rep, err := e.rt.Migrate(ctx, pos[0], script, nil)
		if errors.Is(err, runtime.ErrCheckFailed) {
			fmt.Fprintf(m.Stderr, "starflow resume: not moved to %s: %s\n", script, rep.Summary())
			return ExitDiverged
		}
		if err != nil {
			if errors.Is(err, runtime.ErrInvalid) {
				fmt.Fprintln(m.Stderr, "starflow resume:", err)
				return ExitUsage
			}
			return m.exitForError(err)
		}
		fmt.Fprintf(m.Stderr, "starflow: moved run %s to %s: %s\n", pos[0], script, rep.Summary())
	}
	out, err := e.rt.Resume(ctx, pos[0])
	return m.report(pos[0], out, err)
}
