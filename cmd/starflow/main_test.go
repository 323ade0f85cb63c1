package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/runtime"
)

// bump is the test binary's host builtin with a visible side effect: it
// appends "<idempotency key> <arg>" to $BUMP_FILE, so tests can count how
// often each call really ran across kills and resumes.
func bump() *runtime.Builtin {
	b := bumpFunc()
	b.Effect = true // a side effect: journaled as in flight before it runs
	return b
}

func bumpFunc() *runtime.Builtin {
	return runtime.Func("bump", func(ctx context.Context, c *runtime.Call) (any, error) {
		args, _, err := c.GoArgs()
		if err != nil {
			return nil, err
		}
		path := os.Getenv("BUMP_FILE")
		if path == "" {
			path = "bumps.txt"
		}
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := fmt.Fprintf(f, "%s %v\n", c.Key, args); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		return args, nil
	})
}

func testMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	m.Builtins = []*runtime.Builtin{bump()}
	m.Globals = starlark.StringDict{
		// leak(name) is a deliberately broken builtin: a side effect that
		// bypasses the journal, so it repeats on every replay. starflow
		// test must catch it.
		"leak": starlark.NewBuiltin("leak", func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var name string
			if err := starlark.UnpackPositionalArgs("leak", args, kw, 1, &name); err != nil {
				return nil, err
			}
			m.RecordEffect("leak/"+name, "leak")
			return starlark.None, nil
		}),
		// restarted() makes a script non-deterministic: like reading the
		// process's start time, it answers differently once the run has
		// been resumed in a new process (here: a starflow test child
		// started with --resume).
		"restarted": starlark.NewBuiltin("restarted", func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			return starlark.Bool(slices.Contains(os.Args, "--resume")), nil
		}),
	}
	return m.Run(ctx, os.Args[1:])
}

func TestMain(m *testing.M) {
	if os.Getenv("STARFLOW_TEST_MAIN") == "1" {
		// Re-executed by a Go test as the starflow command.
		os.Exit(testMain())
	}
	testscript.Main(m, map[string]func(){
		"starflow": func() { os.Exit(testMain()) },
	})
}

func TestScripts(t *testing.T) {
	crashMatrix(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("STARFLOW_DB", filepath.Join(env.WorkDir, ".starflow"))
			env.Setenv("BUMP_FILE", filepath.Join(env.WorkDir, "bumps.txt"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// waitfor FILE REGEXP [SECONDS]: wait until FILE matches.
			"waitfor": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: waitfor FILE REGEXP [SECONDS]")
				}
				re := regexp.MustCompile(args[1])
				limit := 30 * time.Second
				if len(args) == 3 {
					s, _ := strconv.Atoi(args[2])
					limit = time.Duration(s) * time.Second
				}
				deadline := time.Now().Add(limit)
				for time.Now().Before(deadline) {
					b, _ := os.ReadFile(ts.MkAbs(args[0]))
					if re.Match(b) {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				ts.Fatalf("%s did not match %q within %s", args[0], args[1], limit)
			},
			// effects FILE KEYS MAXREPEATS: FILE (bump's log) names KEYS
			// distinct idempotency keys, and at most MAXREPEATS lines repeat
			// a key: a call in flight when a process was killed runs again
			// under the same key (at-least-once), so each kill may add one.
			"effects": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 3 {
					ts.Fatalf("usage: effects FILE KEYS MAXREPEATS")
				}
				keys, _ := strconv.Atoi(args[1])
				maxRep, _ := strconv.Atoi(args[2])
				seen := map[string]int{}
				lines := 0
				for _, l := range strings.Split(strings.TrimSpace(ts.ReadFile(args[0])), "\n") {
					if f := strings.Fields(l); len(f) > 0 {
						seen[f[0]]++
						lines++
					}
				}
				if len(seen) != keys || lines-len(seen) > maxRep {
					ts.Fatalf("%s: %d distinct keys (want %d), %d repeated (at most %d)", args[0], len(seen), keys, lines-len(seen), maxRep)
				}
			},
		},
	})
}

// crashMatrix skips a test that kills real processes many times under the
// race detector: CI runs it without -race in a step of its own (.ci/run),
// where it takes a fraction of the time.
func crashMatrix(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("a crash matrix: .ci/run runs it without -race in its own step")
	}
}
