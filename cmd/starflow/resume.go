package main

import (
	"context"
	"fmt"

	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "resume", summary: "continue an interrupted or waiting run", run: (*Main).cmdResume})
}

func (m *Main) cmdResume(ctx context.Context, args []string) int {
	var f execFlags
	fs := f.register(m, "resume", "resume ID [--db DIR]")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow resume: want exactly one run ID")
		fs.Usage()
		return ExitUsage
	}
	e, cl, code := m.session(&f.common, "resume "+pos[0], runtime.Options{MaxInlineWait: f.maxInlineWait})
	if cl != nil {
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
	out, err := e.rt.Resume(ctx, pos[0])
	return m.report(pos[0], out, err)
}
