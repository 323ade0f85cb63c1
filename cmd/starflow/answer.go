package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "answer", summary: "answer the question a run asks (ask_human)", run: (*Main).cmdAnswer})
	register(command{name: "signal", summary: "send a named signal to a run (wait_signal)", run: (*Main).cmdSignal})
}

func (m *Main) cmdAnswer(ctx context.Context, args []string) int {
	return m.sendMessage(ctx, "answer", "answer ID --value JSON [--by NAME] [--no-resume] [--db DIR]", journal.MessageAnswer, 1, args)
}

func (m *Main) cmdSignal(ctx context.Context, args []string) int {
	return m.sendMessage(ctx, "signal", "signal ID NAME [--value JSON] [--by NAME] [--no-resume] [--db DIR]", journal.MessageSignal, 2, args)
}

// sendMessage delivers an answer or a signal, then continues the run if the
// message ended its wait: in this process, or in the server that owns the
// store.
func (m *Main) sendMessage(ctx context.Context, name, usage, kind string, npos int, args []string) int {
	var (
		f        execFlags
		val      string
		by       string
		noResume bool
	)
	fs := f.register(m, name, usage)
	fs.StringVar(&val, "value", "", "the value, JSON (@file reads it from a file, @- from stdin)")
	fs.StringVar(&by, "by", "", "who sends it, recorded with the message (default cli:<user>)")
	fs.BoolVar(&noResume, "no-resume", false, "only deliver the message; do not continue the run here")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != npos {
		fmt.Fprintf(m.Stderr, "starflow %s: want %d arguments\n", name, npos)
		fs.Usage()
		return ExitUsage
	}
	if val == "" {
		if kind == journal.MessageAnswer {
			fmt.Fprintln(m.Stderr, "starflow answer: --value is required (JSON, e.g. --value '\"approve\"')")
			return ExitUsage
		}
		val = "null"
	}
	raw, err := m.readInput(val)
	if err != nil {
		fmt.Fprintf(m.Stderr, "starflow %s: --value: %v\n", name, err)
		return ExitUsage
	}
	if by == "" {
		by = defaultBy()
	}
	id, sig := pos[0], ""
	if kind == journal.MessageSignal {
		sig = pos[1]
	}
	e, cl, code := m.session(&f.common, name+" "+id, f.options())
	if cl != nil {
		var woke bool
		if kind == journal.MessageAnswer {
			r, err := cl.Answer(ctx, id, raw, by)
			if err != nil {
				return m.remoteExit(err)
			}
			woke = r.Woke
		} else {
			r, err := cl.Signal(ctx, id, sig, raw, by)
			if err != nil {
				return m.remoteExit(err)
			}
			woke = r.Woke
		}
		if woke {
			fmt.Fprintf(m.Stderr, "starflow: %s delivered; run %s continues in the server (starflow show %s)\n", name, id, id)
		} else {
			fmt.Fprintf(m.Stderr, "starflow: %s delivered; run %s keeps it until it waits for it\n", name, id)
		}
		return ExitOK
	}
	if e == nil {
		return code
	}
	defer e.Close()
	d, err := e.rt.Send(ctx, id, journal.Message{Kind: kind, Name: sig, Value: raw, From: by})
	if err != nil {
		if errors.Is(err, runtime.ErrInvalid) {
			fmt.Fprintf(m.Stderr, "starflow %s: %v\n", name, err)
			return ExitUsage
		}
		return m.exitForError(err)
	}
	if !d.Resume || noResume {
		if d.Resume {
			fmt.Fprintf(m.Stderr, "starflow: %s delivered; continue the run with: starflow resume %s\n", name, id)
		} else {
			fmt.Fprintf(m.Stderr, "starflow: %s delivered; run %s keeps it until it waits for it\n", name, id)
		}
		return ExitOK
	}
	out, err := e.rt.Resume(ctx, id)
	return m.report(id, out, err)
}
