package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"

	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "cancel", summary: "cancel a waiting or interrupted run", run: (*Main).cmdCancel})
}

func (m *Main) cmdCancel(ctx context.Context, args []string) int {
	var c common
	var by string
	fs := m.newFlagSet("cancel", "cancel ID [--by NAME] [--db DIR]")
	c.register(fs)
	fs.StringVar(&by, "by", "", "who cancels, recorded in the journal (default: the current user)")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow cancel: want exactly one run ID")
		fs.Usage()
		return ExitUsage
	}
	if by == "" {
		by = defaultBy()
	}
	e, cl, code := m.session(&c, "cancel", runtime.Options{})
	if cl != nil {
		r, err := cl.Cancel(ctx, pos[0], by)
		if err != nil {
			return m.remoteExit(err)
		}
		fmt.Fprintf(m.Stderr, "starflow: run %s %s\n", r.ID, r.Error.Message)
		return ExitOK
	}
	if e == nil {
		return code
	}
	defer e.Close()
	out, err := e.rt.Cancel(ctx, pos[0], by)
	if err != nil {
		if errors.Is(err, runtime.ErrInvalid) {
			fmt.Fprintln(m.Stderr, "starflow cancel:", err)
			return ExitUsage
		}
		return m.exitForError(err)
	}
	fmt.Fprintf(m.Stderr, "starflow: run %s %s\n", out.ID, out.Error.Message)
	return ExitOK
}

// defaultBy names the person at this terminal, for the journal.
func defaultBy() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}
