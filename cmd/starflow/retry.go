package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "retry", summary: "run a quarantined run again", run: (*Main).cmdRetry})
}

// cmdRetry releases a run that was quarantined because the process died
// repeatedly while executing it, and continues it (in the server that owns
// the store, or here).
func (m *Main) cmdRetry(ctx context.Context, args []string) int {
	var f execFlags
	var by string
	fs := f.register(m, "retry", "retry ID [--by NAME] [--db DIR]")
	fs.StringVar(&by, "by", "", "who retries, recorded in the journal (default: the current user)")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow retry: want exactly one run ID")
		fs.Usage()
		return ExitUsage
	}
	id := pos[0]
	if by == "" {
		by = defaultBy()
	}
	e, cl, code := m.session(&f.common, "retry "+id, f.options())
	if cl != nil {
		r, err := cl.Retry(ctx, id, by)
		if err != nil {
			return m.remoteExit(err)
		}
		fmt.Fprintf(m.Stderr, "starflow: run %s released from quarantine; it continues in the server at %s\n", id, cl.BaseURL)
		return m.awaitRemote(ctx, cl, r, f.maxInlineWait)
	}
	if e == nil {
		return code
	}
	defer e.Close()
	if _, err := e.rt.Retry(ctx, id, by); err != nil {
		if errors.Is(err, runtime.ErrInvalid) {
			fmt.Fprintln(m.Stderr, "starflow retry:", err)
			return ExitUsage
		}
		return m.exitForError(err)
	}
	fmt.Fprintf(m.Stderr, "starflow: run %s released from quarantine; continuing it\n", id)
	out, err := e.rt.Resume(ctx, id)
	return m.report(id, out, err)
}
