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
		by = "cli"
		if u, err := user.Current(); err == nil {
			by = "cli:" + u.Username
		}
	}
	e, code := m.open(&c, "cancel", runtime.Options{})
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
