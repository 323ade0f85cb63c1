package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/starflow/starflow/internal/errtext"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

func init() {
	register(command{name: "run", summary: "start a workflow (or continue the run with the same --id)", run: (*Main).cmdRun})
}

// execFlags are the flags shared by commands that execute runs.
type execFlags struct {
	common
	limitFlags
	maxInlineWait time.Duration
}

func (f *execFlags) register(m *Main, name, usage string) *flag.FlagSet {
	fs := m.newFlagSet(name, usage)
	f.common.register(fs)
	fs.DurationVar(&f.maxInlineWait, "max-wait", runtime.DefaultMaxInlineWait, "longest wait (sleep, backoff) spent in this process; longer waits exit with code 3 and resume later")
	f.limitFlags.register(fs)
	return fs
}

// options are the runtime options these flags set.
func (f *execFlags) options() runtime.Options {
	o := runtime.Options{MaxInlineWait: f.maxInlineWait}
	f.limitFlags.apply(&o)
	return o
}

// limitFlags bound what runs executed by this process may use.
type limitFlags struct {
	maxMemory  byteSize
	maxCompute time.Duration
	maxCrashes int
}

func (f *limitFlags) register(fs *flag.FlagSet) {
	f.maxMemory = runtime.DefaultMaxMemory
	fs.Var(&f.maxMemory, "max-memory", "memory one run's values may hold, such as 256MiB or 1GiB (0: no limit); a run over it fails with exit code 7")
	fs.DurationVar(&f.maxCompute, "max-compute", runtime.DefaultMaxCompute, "longest a run may compute between builtin calls (0: no limit); a run over it fails with exit code 7")
	fs.IntVar(&f.maxCrashes, "max-crashes", runtime.DefaultMaxCrashes, "quarantine a run after the process died this many times in a row while executing it (0: never)")
}

func (f *limitFlags) apply(o *runtime.Options) {
	o.MaxMemory, o.MaxCompute, o.MaxCrashes = int64(f.maxMemory), f.maxCompute, f.maxCrashes
	if o.MaxMemory == 0 {
		o.MaxMemory = -1
	}
	if o.MaxCompute == 0 {
		o.MaxCompute = -1
	}
	if o.MaxCrashes == 0 {
		o.MaxCrashes = -1
	}
}

func (m *Main) cmdRun(ctx context.Context, args []string) int {
	var (
		f          execFlags
		input      string
		id         string
		durability string
		maxSteps   uint64
		maxCalls   int
		allowWhile bool
		allowRec   bool
	)
	fs := f.register(m, "run", "run SCRIPT [--input JSON|@file] [--id ID] [--durability sync|async|exit] [--db DIR]")
	fs.StringVar(&input, "input", "null", "the run's input: JSON, @file to read it from a file, or @- for stdin")
	fs.StringVar(&id, "id", "", "run ID; starting an ID that exists never repeats completed work (default: a new time-sortable ID)")
	fs.StringVar(&durability, "durability", "sync", "sync (fsync each call), async (survives a process crash), exit (write when the run ends or waits)")
	fs.Uint64Var(&maxSteps, "max-steps", runtime.DefaultMaxSteps, "limit on Starlark execution steps per execution")
	fs.IntVar(&maxCalls, "max-calls", runtime.DefaultMaxCalls, "limit on builtin calls per run")
	fs.BoolVar(&allowWhile, "allow-while", false, "allow while loops (a documented dialect option; recorded with the run)")
	fs.BoolVar(&allowRec, "allow-recursion", false, "allow recursive functions (recorded with the run)")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow run: want exactly one SCRIPT argument")
		fs.Usage()
		return ExitUsage
	}
	script := pos[0]
	dur, err := journal.ParseDurability(durability)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow run: --durability:", err)
		return ExitUsage
	}
	raw, err := m.readInput(input)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow run: --input:", err)
		return ExitUsage
	}
	if id != "" {
		if err := journal.ValidateID(id); err != nil {
			fmt.Fprintln(m.Stderr, "starflow run: --id:", err)
			return ExitUsage
		}
	} else {
		id = runtime.NewID()
	}
	if _, err := os.Stat(script); err != nil {
		fmt.Fprintf(m.Stderr, "starflow run: cannot read script %s: %v\n", script, errors.Unwrap(err))
		return ExitUsage
	}
	e, cl, code := m.session(&f.common, "run "+script, f.options())
	if cl != nil {
		return m.runRemote(ctx, cl, f.maxInlineWait, server.StartRequest{ID: id, Entry: runtime.ScriptName(script), Input: raw, Durability: dur,
			Limits: &journal.Limits{MaxSteps: maxSteps, MaxCalls: maxCalls}, Dialect: &journal.Dialect{While: allowWhile, Recursion: allowRec}})
	}
	if e == nil {
		return code
	}
	defer e.Close()
	out, err := e.rt.Start(ctx, runtime.StartRequest{
		ID:         id,
		Script:     script,
		Input:      raw,
		Durability: dur,
		Limits:     journal.Limits{MaxSteps: maxSteps, MaxCalls: maxCalls},
		Dialect:    journal.Dialect{While: allowWhile, Recursion: allowRec},
	})
	return m.report(id, out, err)
}

// runRemote submits a run to the server that owns the store, with the
// script's files, and waits for its outcome.
func (m *Main) runRemote(ctx context.Context, cl *server.Client, maxWait time.Duration, req server.StartRequest) int {
	files, err := runtime.ReadScripts(req.Entry)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow:", err)
		return ExitUsage
	}
	req.Sources = map[string]string{}
	for name, src := range files {
		req.Sources[name] = string(src)
	}
	req.Wait = "1m"
	r, err := cl.Start(ctx, req)
	var ae *server.APIError
	if errors.As(err, &ae) && ae.Code == "inline_source_disabled" {
		// The server runs only script files in its script directory: name
		// the file instead (this process and the server share a machine:
		// the store's owner file told us where it listens).
		abs, aerr := filepath.Abs(req.Entry)
		if aerr != nil {
			return m.remoteExit(err)
		}
		req.Script, req.Entry, req.Sources = abs, "", nil
		if r, err = cl.Start(ctx, req); err != nil {
			if errors.As(err, &ae) && ae.Code == "invalid_request" && strings.Contains(ae.Message, "outside the server's script directory") {
				fmt.Fprintf(m.Stderr, "starflow: the server at %s runs only scripts in its script directory (starflow serve --scripts), and %s is not in it; move the script there, or start the server with --allow-inline-source\n", cl.BaseURL, abs)
				return ExitUsage
			}
			return m.remoteExit(err)
		}
	}
	if err != nil {
		return m.remoteExit(err)
	}
	fmt.Fprintf(m.Stderr, "starflow: run %s is executing in the server at %s\n", r.ID, cl.BaseURL)
	return m.awaitRemote(ctx, cl, r, maxWait)
}

// readInput reads --input: inline JSON, @file, or @- for stdin. It
// refuses, before reading it whole, an input over server.MaxInputBytes,
// and input that is not UTF-8, naming the byte's offset. The JSON itself
// is validated by the runtime (with the offset of the error).
func (m *Main) readInput(s string) (json.RawMessage, error) {
	var b []byte
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		var err error
		if rest == "-" {
			b, err = readLimited(m.Stdin, -1)
		} else {
			var f *os.File
			if f, err = os.Open(rest); err != nil {
				return nil, err
			}
			defer f.Close()
			size := int64(-1)
			if st, serr := f.Stat(); serr == nil && st.Mode().IsRegular() {
				size = st.Size()
			}
			b, err = readLimited(f, size)
		}
		if err != nil {
			return nil, err
		}
	} else {
		if len(s) > server.MaxInputBytes {
			return nil, inputTooLarge(int64(len(s)))
		}
		b = []byte(s)
	}
	if !utf8.Valid(b) {
		for i := 0; i < len(b); {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return nil, fmt.Errorf("not valid UTF-8: byte 0x%02x at offset %d (JSON text must be UTF-8)", b[i], i)
			}
			i += n
		}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("empty input (pass null for no input)")
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return json.RawMessage(b), nil
}

// readLimited reads at most server.MaxInputBytes: a file whose size is
// known to be larger is refused before it is read.
func readLimited(r io.Reader, size int64) ([]byte, error) {
	if size > server.MaxInputBytes {
		return nil, inputTooLarge(size)
	}
	b, err := io.ReadAll(io.LimitReader(r, server.MaxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > server.MaxInputBytes {
		return nil, inputTooLarge(-1)
	}
	return b, nil
}

func inputTooLarge(size int64) error {
	what := "the input is larger than"
	if size >= 0 {
		what = fmt.Sprintf("the input is %d bytes, over", size)
	}
	return fmt.Errorf("%s the limit of %d bytes (%d MiB) on inputs, answers and signals; pass large data by reference (a path or URL the script reads)", what, server.MaxInputBytes, server.MaxInputBytes>>20)
}

// report prints an outcome the way run and resume do, and returns the exit
// code.
func (m *Main) report(id string, out *runtime.Outcome, err error) int {
	if errors.Is(err, runtime.ErrInterrupted) {
		fmt.Fprintf(m.Stderr, "starflow: interrupted; run %s is saved and continues with: starflow resume %s\n", id, id)
		return ExitInterrupted
	}
	if err != nil {
		return m.exitForError(err)
	}
	for _, n := range out.Notes {
		fmt.Fprintln(m.Stderr, "starflow: note:", n)
	}
	switch out.Status {
	case journal.StatusCompleted:
		fmt.Fprintln(m.Stdout, string(out.Result))
	case journal.StatusFailed:
		fmt.Fprintf(m.Stderr, "starflow: run %s failed: %s\n", id, errtext.Clean(out.Error.Error()))
		if out.Error.Backtrace != "" && out.Error.Kind != "limit" {
			fmt.Fprint(m.Stderr, indent(out.Error.Backtrace))
		}
	case journal.StatusWaiting:
		w := out.Waiting
		fmt.Fprintf(m.Stderr, "starflow: run %s is waiting", id)
		if w.Pos != "" {
			fmt.Fprintf(m.Stderr, " at %s", w.Pos)
		}
		fmt.Fprintf(m.Stderr, " in %s: %s\n", w.Builtin, w.Reason)
		fmt.Fprintln(m.Stderr, waitHint(id, w))
	case journal.StatusCancelled:
		fmt.Fprintf(m.Stderr, "starflow: run %s was %s\n", id, out.Error.Message)
	case journal.StatusDiverged:
		fmt.Fprintf(m.Stderr, "starflow: %s\n", out.Error.Message)
		fmt.Fprintln(m.Stderr, "starflow: the run is stopped; its journal is intact (starflow history "+id+")")
	case journal.StatusQuarantined:
		fmt.Fprintf(m.Stderr, "starflow: run %s is quarantined: %s\n", id, errtext.Clean(out.Error.Message))
	}
	return exitForOutcome(out)
}

// waitHint tells the user how a waiting run continues.
func waitHint(id string, w *journal.Waiting) string {
	switch {
	case w.Builtin == "ask_human":
		return fmt.Sprintf("starflow: answer with: starflow answer %s --value JSON", id)
	case w.Builtin == "wait_signal":
		var sw struct {
			Name string `json:"name"`
		}
		name := "NAME"
		if json.Unmarshal(w.Data, &sw) == nil && sw.Name != "" {
			name = sw.Name
		}
		return fmt.Sprintf("starflow: signal with: starflow signal %s %s --value JSON", id, name)
	case w.Until != nil:
		return fmt.Sprintf("starflow: continue with: starflow resume %s (due %s; resuming earlier waits only for what is left)", id, w.Until.Local().Format("2006-01-02 15:04:05 MST"))
	}
	return fmt.Sprintf("starflow: continue with: starflow resume %s", id)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
