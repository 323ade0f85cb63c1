package runtime_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

const checkBase = `
def main(input):
    a = bump("x")
    b = uuid()
    c = bump("y")
    sleep("1h")
    return [a["n"], c["n"]]
`

func srcs(src string) map[string][]byte { return map[string][]byte{"new.star": []byte(src)} }

func TestReplayCheck(t *testing.T) {
	e := runtest.New(t)
	if out := e.Start("r", checkBase, `null`); out.Status != journal.StatusWaiting {
		t.Fatal(out.Status)
	}
	records := len(e.Records("r"))
	cases := []struct {
		name   string
		from   string
		to     string
		ok     bool
		expect []string
	}{
		{"changed argument", `bump("x")`, `bump("z")`, false, []string{"step 1", `bump("x") at wf.star:3:13`, `bump("z") at new.star:3:13`, "different arguments"}},
		{"inserted call", "    b = uuid()\n", "    n = now()\n    b = uuid()\n", false, []string{"step 2", `uuid() at wf.star:4:13`, `now() at new.star:4:12`}},
		{"removed call", "    b = uuid()\n", "", false, []string{"step 2", `uuid() at wf.star:4:13`, `bump("y") at new.star:4:13`}},
		{"reordered calls", "    b = uuid()\n    c = bump(\"y\")\n", "    c = bump(\"y\")\n    b = uuid()\n", false, []string{"step 2", "a different builtin"}},
		{"changed builtin", `b = uuid()`, `b = random()`, false, []string{"step 2", `uuid() at wf.star:4:13`, `random() at new.star:4:15`}},
		{"removed trailing calls", "    c = bump(\"y\")\n    sleep(\"1h\")\n    return [a[\"n\"], c[\"n\"]]", "    return 0", false, []string{"step 3", "finished without making that call"}},
		{"edit after the last journaled call", `return [a["n"], c["n"]]`, `return {"a": a["n"], "c": c["n"], "v": 2}`, true, []string{"3 of 3 journaled calls", "step 4, sleep() at new.star:6:10"}},
		{"refactor with same calls", "    a = bump(\"x\")\n", "    a = helper()\n", true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(checkBase, c.from, c.to, 1)
			if c.name == "refactor with same calls" {
				src = "def helper():\n    return bump('x')\n" + src
			}
			if src == checkBase {
				t.Fatal("edit did not apply")
			}
			before := e.Count.Total()
			rep, err := e.RT.Check(bg, "r", "new.star", srcs(src))
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK != c.ok {
				t.Fatalf("OK = %v: %s", rep.OK, rep.Summary())
			}
			for _, w := range c.expect {
				if !strings.Contains(rep.Summary(), w) {
					t.Errorf("summary %q lacks %q", rep.Summary(), w)
				}
			}
			if e.Count.Total() != before {
				t.Fatal("the check ran a builtin")
			}
		})
	}
	// The check wrote nothing.
	if n := len(e.Records("r")); n != records {
		t.Fatalf("journal has %d records after checks", n)
	}
	// New code that fails while replaying fails the check.
	rep, err := e.RT.Check(bg, "r", "new.star", srcs(strings.Replace(checkBase, "    b = uuid()\n", "    b = uuid()\n    x = {}['k']\n", 1)))
	if err != nil || rep.OK || rep.Error == nil || rep.Error.Pos != "new.star:5:11" {
		t.Fatalf("failing code: %+v %v", rep, err)
	}
	// Syntax errors are bad input.
	if _, err := e.RT.Check(bg, "r", "new.star", srcs("def main(input):\n  return (\n")); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("syntax: %v", err)
	}
}

func TestMigrate(t *testing.T) {
	e := runtest.New(t)
	e.Start("m", checkBase, `null`)
	// A diverging change is refused and the run is untouched.
	_, err := e.RT.Migrate(bg, "m", "new.star", srcs(strings.Replace(checkBase, `bump("x")`, `bump("q")`, 1)))
	if !errors.Is(err, runtime.ErrCheckFailed) || !strings.Contains(err.Error(), "different arguments") {
		t.Fatalf("migrate diverging: %v", err)
	}
	// A compatible change moves the run, which then finishes on the new code.
	rep, err := e.RT.Migrate(bg, "m", "new.star", srcs(strings.Replace(checkBase, `return [a["n"], c["n"]]`, `return "v2"`, 1)))
	if err != nil || !rep.OK {
		t.Fatalf("migrate: %+v %v", rep, err)
	}
	e.Clock.Advance(2 * time.Hour)
	runtest.MustResult(t, e.Resume("m"), `"v2"`)
	meta, _ := e.Store.Run(bg, "m")
	if meta.Script != "new.star" {
		t.Fatalf("meta script %s", meta.Script)
	}
	var found bool
	for _, r := range e.Records("m") {
		found = found || r.Type == journal.TypeRunMigrated
	}
	if !found || e.Count.Total() != 2 {
		t.Fatalf("run.migrated recorded %v; bump ran %d times", found, e.Count.Total())
	}
	if _, err := e.RT.Migrate(bg, "m", "new.star", srcs(checkBase)); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("migrate finished run: %v", err)
	}
}

func TestFork(t *testing.T) {
	e := runtest.New(t)
	src := `
def main(input):
    a = bump("one")
    s = echo(struct(text = "original", n = 1))
    c = bump("three")
    return [a["n"], s.text, s.n, c["n"]]
`
	runtest.MustResult(t, e.Start("o", src, `null`), `[1, "original", 1, 2]`)
	// Fork at call 2: calls 1 and 2 are reused, call 3 runs again live.
	out, err := e.RT.Fork(bg, "o", runtime.ForkRequest{ID: "f1", At: 2})
	if err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, e.Resume(out.ID), `[1, "original", 1, 3]`)
	if e.Count.Runs("f1/1") != 0 || e.Count.Runs("f1/3") != 1 {
		t.Fatalf("fork re-ran reused calls: %v", e.Count.Keys)
	}
	// With a replaced result, merged into the struct.
	out, err = e.RT.Fork(bg, "o", runtime.ForkRequest{ID: "f2", At: 2, SetResult: json.RawMessage(`{"text": "edited"}`)})
	if err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, e.Resume(out.ID), `[1, "edited", 1, 4]`)
	meta, _ := e.Store.Run(bg, "f2")
	if meta.Origin == nil || meta.Origin.Run != "o" || meta.Origin.At != 2 || !meta.Origin.SetResult {
		t.Fatalf("origin %+v", meta.Origin)
	}
	// The original is untouched and still inspectable.
	orig, _ := e.Store.Run(bg, "o")
	if orig.Status != journal.StatusCompleted || !runtest.SameJSON(orig.Result, []byte(`[1, "original", 1, 2]`)) {
		t.Fatalf("original changed: %+v", orig)
	}
	// On new code.
	out, err = e.RT.Fork(bg, "o", runtime.ForkRequest{ID: "f3", At: 1, Script: "v2.star", Sources: map[string][]byte{"v2.star": []byte(
		"def main(input):\n    a = bump('one')\n    return ['v2', a['n']]\n")}})
	if err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, e.Resume(out.ID), `["v2", 1]`)
	// Bad requests.
	for _, req := range []runtime.ForkRequest{{At: 9}, {At: -1}, {At: 0, SetResult: json.RawMessage(`1`)}, {ID: "o", At: 1}, {At: 1, SetResult: json.RawMessage(`{`)}} {
		if _, err := e.RT.Fork(bg, "o", req); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("%+v: %v", req, err)
		}
	}
}
