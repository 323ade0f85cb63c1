package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "list", summary: "list runs, newest first", run: (*Main).cmdList})
}

func (m *Main) cmdList(ctx context.Context, args []string) int {
	var c common
	var asJSON bool
	var status string
	var limit int
	fs := m.newFlagSet("list", "list [--status S[,S...]] [--limit N] [--json] [--db DIR]")
	c.register(fs)
	fs.StringVar(&status, "status", "", "only runs with these statuses (comma-separated): running, waiting, completed, failed, cancelled, diverged")
	fs.IntVar(&limit, "limit", 0, "at most N runs (0: all)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array of runs")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintln(m.Stderr, "starflow list: takes no arguments")
		return ExitUsage
	}
	var filter journal.Filter
	if status != "" {
		for _, s := range strings.Split(status, ",") {
			st, err := journal.ParseStatus(strings.TrimSpace(s))
			if err != nil {
				fmt.Fprintln(m.Stderr, "starflow list: --status:", err)
				return ExitUsage
			}
			filter.Status = append(filter.Status, st)
		}
	}
	filter.Limit = limit
	var runs []*journal.Run
	// Damaged runs do not hide the others: they are listed, the damaged
	// ones named on stderr, and the exit code says the store needs care.
	var bad *journal.CorruptRunsError
	e, cl, code := m.session(&c, "list", runtime.Options{})
	if cl != nil {
		var err error
		if runs, err = cl.List(ctx, filter.Status, filter.Limit); err != nil && !errors.As(err, &bad) {
			return m.remoteExit(err)
		}
	} else if e == nil {
		return code
	} else {
		defer e.Close()
		var err error
		if runs, err = e.store.List(ctx, filter); err != nil && !errors.As(err, &bad) {
			return m.exitForError(err)
		}
	}
	if asJSON {
		if runs == nil {
			runs = []*journal.Run{}
		}
		b, _ := json.MarshalIndent(runs, "", "  ")
		fmt.Fprintln(m.Stdout, string(b))
		if bad != nil {
			fmt.Fprintln(m.Stderr, "starflow list:", bad)
			return ExitStore
		}
		return ExitOK
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tSCRIPT\tCREATED\tUPDATED")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, r.Script, r.CreatedAt.Local().Format(time.DateTime), r.UpdatedAt.Local().Format(time.DateTime))
	}
	tw.Flush()
	if bad != nil {
		fmt.Fprintln(m.Stderr, "starflow list:", bad)
		return ExitStore
	}
	return ExitOK
}
