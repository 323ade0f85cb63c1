package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

func init() {
	register(command{name: "replay", summary: "check a run against changed code, without side effects", run: (*Main).cmdReplay})
}

// codeRequest reads a script and the files it loads for the API.
func codeRequest(script string) (server.CodeRequest, error) {
	files, err := runtime.ReadScripts(script)
	if err != nil {
		return server.CodeRequest{}, err
	}
	req := server.CodeRequest{Entry: runtime.ScriptName(script), Sources: map[string]string{}}
	for k, v := range files {
		req.Sources[k] = string(v)
	}
	return req, nil
}

func (m *Main) cmdReplay(ctx context.Context, args []string) int {
	var c common
	var script string
	fs := m.newFlagSet("replay", "replay ID --script NEW.star [--db DIR]")
	c.register(fs)
	fs.StringVar(&script, "script", "", "the changed script to check the run's journal against (required)")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || script == "" {
		fmt.Fprintln(m.Stderr, "starflow replay: want a run ID and --script NEW.star")
		fs.Usage()
		return ExitUsage
	}
	e, cl, code := m.session(&c, "replay", runtime.Options{})
	if cl != nil {
		req, err := codeRequest(script)
		if err != nil {
			fmt.Fprintln(m.Stderr, "starflow replay:", err)
			return ExitUsage
		}
		r, err := cl.Check(ctx, pos[0], req)
		if err != nil {
			return m.remoteExit(err)
		}
		return m.checkExit(r.OK, r.Divergence, r.Summary)
	}
	if e == nil {
		return code
	}
	defer e.Close()
	rep, err := e.rt.Check(ctx, pos[0], script, nil)
	if err != nil {
		if errors.Is(err, runtime.ErrInvalid) {
			fmt.Fprintln(m.Stderr, "starflow replay:", err)
			return ExitUsage
		}
		return m.exitForError(err)
	}
	return m.checkExit(rep.OK, rep.Divergence != nil, rep.Summary())
}

// checkExit prints a replay check's summary: exit 0 when it passes, 5 on a
// divergence, 1 when the new code fails.
func (m *Main) checkExit(ok, diverged bool, summary string) int {
	if ok {
		fmt.Fprintln(m.Stdout, "ok:", summary)
		return ExitOK
	}
	fmt.Fprintln(m.Stdout, "FAIL:", summary)
	if diverged {
		return ExitDiverged
	}
	return ExitFailed
}
