package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	sfrt "github.com/starflow/starflow/runtime"
)

const everyBuiltin = `
def main(input):
    t = now()
    u = uuid()
    r = random()
    sleep(0)
    b = bump(input["name"], 2)
    sleep("2h")
    return {"t": str(t), "u": u, "r": r, "b": b, "after": str(now())}
`

// A run that suspends, then resumes: every builtin's result comes back from
// the journal, identical, and no side effect repeats.
func TestReplayReturnsRecordedValues(t *testing.T) {
	e := newEnv(t)
	out := e.Start("r1", everyBuiltin, `{"name": "ada"}`)
	if out.Status != journal.StatusWaiting || out.Waiting == nil || out.Waiting.Builtin != "sleep" {
		t.Fatalf("first execution: %+v", out)
	}
	if want := e.Clock.Now().Add(2 * time.Hour); !out.Waiting.Until.Equal(want) {
		t.Fatalf("wake-up %v, want %v", out.Waiting.Until, want)
	}
	if e.Count.Total() != 1 {
		t.Fatalf("bump ran %d times", e.Count.Total())
	}
	// Resume too early: still waiting on the same wake-up time, nothing re-run.
	e.Clock.Advance(time.Hour)
	out = e.Resume("r1")
	if out.Status != journal.StatusWaiting || out.Stats.Replayed != 5 || out.Stats.Executed != 0 {
		t.Fatalf("early resume: %+v", out)
	}
	if want := e.Clock.Now().Add(time.Hour); !out.Waiting.Until.Equal(want) {
		t.Fatalf("early resume moved the wake-up to %v", out.Waiting.Until)
	}
	e.Clock.Advance(time.Hour)
	out = e.Resume("r1")
	if out.Status != journal.StatusCompleted {
		t.Fatalf("final: %+v %v", out, out.Error)
	}
	if e.Count.Total() != 1 || e.Count.Keys["r1/5"] != 1 {
		t.Fatalf("bump ran %d times (%v), want once", e.Count.Total(), e.Count.Keys)
	}
	var res map[string]any
	json.Unmarshal(out.Result, &res)
	if res["t"] != "2026-11-27 12:00:00 +0000 UTC" || res["after"] != "2026-11-27 14:00:00 +0000 UTC" {
		t.Fatalf("times: %v", res)
	}
	// The values the script saw are the journaled ones: compare with the
	// call records.
	var uuidRec string
	for _, r := range e.Records("r1") {
		if r.Type == journal.TypeCallCompleted {
			var cc journal.CallCompleted
			r.Decode(&cc)
			if cc.Step == "2" {
				json.Unmarshal(cc.Result, &uuidRec)
			}
		}
	}
	if res["u"] != uuidRec || uuidRec == "" {
		t.Fatalf("uuid %v, journal %q", res["u"], uuidRec)
	}
	// Resuming a finished run runs nothing and returns the same result.
	again := e.Resume("r1")
	if string(again.Result) != string(out.Result) || again.Stats.Executed+again.Stats.Replayed != 0 {
		t.Fatalf("resume of completed run: %+v", again)
	}
}

// Crash at every record boundary: a run rebuilt from each prefix of a
// finished journal reaches the same result, and the host side effect runs
// only for calls whose completion was not in the prefix.
func TestCrashAtEveryRecord(t *testing.T) {
	e := newEnv(t)
	src := `
def main(input):
    out = []
    for i in range(4):
        out.append(bump("step", i)["args"])
        log("did", i=i)
    return out
`
	ref := e.Start("ref", src, `null`)
	runtest.MustResult(t, ref, `[["step",0],["step",1],["step",2],["step",3]]`)
	recs := e.Records("ref")
	for n := 1; n < len(recs); n++ {
		id := fmt.Sprintf("crash%d", n)
		completed := 0
		for _, r := range recs[:n] {
			if r.Type == journal.TypeCallCompleted {
				completed++
			}
		}
		before := e.Count.Total()
		e.Clone("ref", id, n, "")
		out := e.Resume(id)
		if string(out.Result) != string(ref.Result) {
			t.Fatalf("prefix %d: result %s, want %s", n, out.Result, ref.Result)
		}
		if ran := e.Count.Total() - before; ran != 4-completed {
			t.Fatalf("prefix %d (%d completed): bump ran %d times, want %d", n, completed, ran, 4-completed)
		}
		if out.Stats.Replayed != completed {
			t.Fatalf("prefix %d: replayed %d, want %d", n, out.Stats.Replayed, completed)
		}
	}
}

func TestInFlightCallRunsAgainWithSameKey(t *testing.T) {
	e := newEnv(t)
	out := e.Start("k", `
def main(input):
    a = bump("a")
    return bump("b")["n"]
`, `null`)
	runtest.MustResult(t, out, `2`)
	// Keep run.started, call 1 started+completed, and call 2 started only
	// (as a crash between the two records of a call would leave it).
	e.Clone("k", "k2", 4, "")
	out = e.Resume("k2")
	runtest.MustResult(t, out, `3`)
	if e.Count.Keys["k2/2"] != 1 || e.Count.Keys["k2/1"] != 0 {
		t.Fatalf("keys %v", e.Count.Keys)
	}
	// The clone's key is its own run id; the original ran with k/2.
	if e.Count.Keys["k/2"] != 1 {
		t.Fatalf("keys %v", e.Count.Keys)
	}
}

func TestDivergence(t *testing.T) {
	base := `
def main(input):
    a = bump("x")
    b = uuid()
    c = bump("y")
    return [a["n"], c["n"]]
`
	cases := []struct {
		name      string
		src, want []string
	}{
		{"changed argument", []string{`bump("x")`, `bump("CHANGED")`}, []string{`step 1`, `bump("x") at wf.star:3:13`, `bump("CHANGED") at wf.star:3:13`, "different arguments"}},
		{"reordered calls", []string{"    b = uuid()\n    c = bump(\"y\")", "    c = bump(\"y\")\n    b = uuid()"}, []string{`step 2`, `uuid() at wf.star:4:13`, `bump("y") at wf.star:4:13`, "a different builtin"}},
		{"removed call", []string{"    b = uuid()\n", ""}, []string{`step 2`, `uuid() at wf.star:4:13`, `bump("y") at wf.star:4:13`}},
		{"added call", []string{"    b = uuid()\n", "    b = uuid()\n    z = random()\n"}, []string{`step 3`, `bump("y") at wf.star:5:13`, `random() at wf.star:5:15`}},
		{"removed last call", []string{"    c = bump(\"y\")\n    return [a[\"n\"], c[\"n\"]]", "    return [a[\"n\"]]"}, []string{`step 3`, `bump("y") at wf.star:5:13`, "finished without making that call"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			runtest.MustResult(t, e.Start("orig", base, `null`), `[1,2]`)
			changed := strings.Replace(base, tc.src[0], tc.src[1], 1)
			if changed == base {
				t.Fatal("replacement did not apply")
			}
			e.Clone("orig", "new", 1000, changed)
			before := e.Count.Total()
			out := e.Resume("new")
			if out.Status != journal.StatusDiverged || out.Error == nil || out.Error.Kind != "divergence" {
				t.Fatalf("outcome %+v %+v", out, out.Error)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.Error.Message, w) {
					t.Errorf("message %q lacks %q", out.Error.Message, w)
				}
			}
			if e.Count.Total() != before {
				t.Fatalf("a diverged replay ran a side effect")
			}
			// The diverged state is recorded and final.
			meta, _ := e.Store.Run(bg, "new")
			if meta.Status != journal.StatusDiverged {
				t.Fatalf("meta %+v", meta)
			}
		})
	}
	// An edit after the last journaled call is not a divergence.
	e := newEnv(t)
	e.Start("w", "def main(input):\n    a = bump(1)\n    sleep('1h')\n    return 1\n", `null`)
	e.Clone("w", "w2", 1000, "def main(input):\n    a = bump(1)\n    sleep('1h')\n    return 2\n")
	e.Clock.Advance(2 * time.Hour)
	runtest.MustResult(t, e.Resume("w2"), `2`)
}

func TestLimits(t *testing.T) {
	e := newEnv(t, func(o *sfrt.Options) { o.MaxSteps = 100000; o.MaxCalls = 5 })
	out := e.Start("loop", `
def main(input):
    n = 0
    for i in range(1 << 40):
        n += i
    return n
`, `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "limit" || !strings.Contains(out.Error.Message, "100000 execution steps") || !strings.HasPrefix(out.Error.Pos, "wf.star:") {
		t.Fatalf("steps: %+v %+v", out, out.Error)
	}
	out = e.Start("calls", `
def main(input):
    for i in range(100):
        attempt(now)
`, `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "limit" || !strings.Contains(out.Error.Message, "limit of 5 builtin calls") || out.Error.Pos != "wf.star:4:16" {
		t.Fatalf("calls: %+v %+v", out, out.Error)
	}
	// attempt() does not swallow the step limit either.
	out = e.Start("loop2", `
def spin():
    for i in range(1 << 40):
        pass
def main(input):
    r = attempt(spin)
    return "caught"
`, `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "limit" {
		t.Fatalf("attempt swallowed the limit: %+v %+v", out, out.Error)
	}
	// A run keeps the limits it started with.
	out, err := e.RT.Start(bg, sfrt.StartRequest{ID: "own", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte("def main(input):\n    return [now() for i in range(8)][-1] != None\n")}, Limits: journal.Limits{MaxCalls: 10}})
	if err != nil || out.Status != journal.StatusCompleted {
		t.Fatalf("own limits: %+v %v", out, err)
	}
}

func TestRetryPolicyForHostBuiltins(t *testing.T) {
	flaky, calls := failingBuiltin("flaky", 2, func(n int) error { return sfrt.Transient("unavailable", errBoom) })
	flaky.Retry = &sfrt.RetryPolicy{MaxAttempts: 4, InitialInterval: 5 * time.Millisecond, MaxInterval: 40 * time.Millisecond, Jitter: -1}
	fatal, fcalls := failingBuiltin("fatal", 10, func(n int) error { return sfrt.Permanent("bad_request", fmt.Errorf("no such order %d", n)) })
	fatal.Retry = &sfrt.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Millisecond}
	classed, ccalls := failingBuiltin("classed", 10, func(n int) error { return sfrt.Transient("quota", errBoom) })
	classed.Retry = &sfrt.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Millisecond, NonRetryable: []string{"quota"}}
	always, acalls := failingBuiltin("always", 100, func(n int) error { return errBoom })
	always.Retry = &sfrt.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, BackoffCoefficient: 2}
	e := newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, flaky, fatal, classed, always) })

	out := e.Start("retry", `
def main(input):
    a = flaky()
    b = attempt(fatal)
    c = attempt(classed)
    d = attempt(always)
    return [a, b.ok, b.kind, b.error, c.kind, d.ok, d.error]
`, `null`)
	runtest.MustResult(t, out, `["ok after 3", false, "bad_request", "fatal: no such order 1", "quota", false, "always: boom"]`)
	if calls.Load() != 3 || fcalls.Load() != 1 || ccalls.Load() != 1 || acalls.Load() != 3 {
		t.Fatalf("attempts: flaky %d fatal %d classed %d always %d", calls.Load(), fcalls.Load(), ccalls.Load(), acalls.Load())
	}
	// Attempts are journaled with growing waits.
	for _, r := range e.Records("retry") {
		if r.Type != journal.TypeCallCompleted {
			continue
		}
		var cc journal.CallCompleted
		r.Decode(&cc)
		if cc.Step == "1" {
			if len(cc.Attempts) != 3 || cc.Attempts[0].Wait != 5*time.Millisecond || cc.Attempts[1].Wait != 10*time.Millisecond || cc.Attempts[2].Error != "" {
				t.Fatalf("attempts %+v", cc.Attempts)
			}
		}
		if cc.Step == "4" && (cc.Error == nil || len(cc.Attempts) != 3) {
			t.Fatalf("always: %+v", cc)
		}
	}
	// Replay raises the recorded errors again without calling anything.
	e.Clone("retry", "retry2", 1000, "")
	runtest.MustResult(t, e.Resume("retry2"), string(out.Result))
	if calls.Load() != 3 || acalls.Load() != 3 {
		t.Fatal("replay called a builtin")
	}
}

func TestRetryPolicyMath(t *testing.T) {
	p := sfrt.DefaultRetryPolicy()
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 60: 30 * time.Second} {
		if got := p.Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if lo, hi := p.Delay(1, 0), p.Delay(1, 0.999999); lo != 800*time.Millisecond || hi < 1199*time.Millisecond {
		t.Errorf("jitter bounds %v %v", lo, hi)
	}
	if !p.ShouldRetry(&sfrt.Error{Retryable: true}, 3) || p.ShouldRetry(&sfrt.Error{Retryable: true}, 4) || p.ShouldRetry(&sfrt.Error{}, 1) {
		t.Error("ShouldRetry")
	}
	for _, bad := range []sfrt.RetryPolicy{{MaxAttempts: -1}, {BackoffCoefficient: 0.5}, {Jitter: 2}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestAttemptCatchesScriptErrors(t *testing.T) {
	e := newEnv(t)
	out := e.Start("a", `
def bad(x):
    return 1 // x
def boom():
    fail("custom failure")
def main(input):
    r1 = attempt(bad, 0)
    r2 = attempt(boom)
    r3 = attempt(bad, x=1)
    r4 = attempt(sleep, "bogus")
    return [r1.ok, r1.error, r1.kind, r2.error, r3.ok, r3.value, r4.kind, r4.error]
`, `null`)
	runtest.MustResult(t, out, `[false, "floored division by zero", "script", "fail: custom failure", true, 1, "invalid_argument", "sleep: invalid duration \"bogus\" (use seconds, or a string such as \"90s\", \"1h30m\" or \"2d\")"]`)
}

func TestScriptFailureHasPosition(t *testing.T) {
	e := newEnv(t)
	out := e.Start("f", "def helper(d):\n    return d['missing']\n\ndef main(input):\n    now()\n    return helper({})\n", `null`)
	if out.Status != journal.StatusFailed || out.Error.Pos != "wf.star:2:13" || !strings.Contains(out.Error.Message, "missing") || !strings.Contains(out.Error.Backtrace, "wf.star:6:18: in main") {
		t.Fatalf("%+v %+v", out, out.Error)
	}
	// A failed builtin call fails the run with its kind and the caller's position.
	out = e.Start("f2", "def main(input):\n    sleep(-3)\n", `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "invalid_argument" || out.Error.Pos != "wf.star:2:10" || !strings.Contains(out.Error.Message, "negative duration") {
		t.Fatalf("%+v %+v", out, out.Error)
	}
	out = e.Start("f3", "def main(input):\n    return len\n", `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "result" || !strings.Contains(out.Error.Message, "not JSON") {
		t.Fatalf("%+v %+v", out, out.Error)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		files map[string]string
		input string
		want  string
	}{
		{map[string]string{"wf.star": "def main(input):\n    return (\n"}, `null`, "wf.star:3:1: syntax error"},
		{map[string]string{"wf.star": "def main(input):\n    return undefined_name\n"}, `null`, "wf.star:2:12: undefined: undefined_name"},
		{map[string]string{"wf.star": "def start(input):\n    return 1\n"}, `null`, "wf.star:1:1: no main function"},
		{map[string]string{"wf.star": "def main():\n    return 1\n"}, `null`, "wf.star:1:1: main must take one parameter"},
		{map[string]string{"wf.star": "def main(input):\n    return 1\n"}, `{"a": }`, "input is not valid JSON"},
		{map[string]string{"wf.star": "load('missing.star', 'x')\ndef main(input):\n    return 1\n"}, `null`, "wf.star:1:6: cannot read script missing.star: no such file"},
		{map[string]string{"wf.star": "load('../up.star', 'x')\ndef main(input):\n    return 1\n"}, `null`, "outside the script's directory"},
		{map[string]string{"wf.star": "def main(input):\n    while True:\n        pass\n"}, `null`, "wf.star:2:5: this Starlark dialect does not support while loops"},
		{map[string]string{}, `null`, "cannot read script wf.star: no such file"},
	}
	for _, tc := range cases {
		src := map[string][]byte{}
		for k, v := range tc.files {
			src[k] = []byte(v)
		}
		_, err := e.RT.Start(bg, sfrt.StartRequest{Script: "wf.star", Sources: src, Input: json.RawMessage(tc.input)})
		if !errors.Is(err, sfrt.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.files, err, tc.want)
		}
	}
	if runs, _ := e.Store.List(bg, journal.Filter{}); len(runs) != 0 {
		t.Fatalf("bad requests created runs: %d", len(runs))
	}
	if _, err := e.RT.Resume(bg, "nope"); !errors.Is(err, sfrt.ErrInvalid) {
		t.Fatalf("resume unknown: %v", err)
	}
	if _, err := e.RT.Start(bg, sfrt.StartRequest{ID: "bad/id", Script: "x"}); !errors.Is(err, sfrt.ErrInvalid) {
		t.Fatalf("bad id: %v", err)
	}
	// Documented dialect options enable while and recursion.
	out, err := e.RT.Start(bg, sfrt.StartRequest{Script: "wf.star", Dialect: journal.Dialect{While: true, Recursion: true}, Sources: map[string][]byte{"wf.star": []byte(
		"def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\ndef main(input):\n    i = 0\n    while i < 3:\n        i += 1\n    return fact(5) + i\n")}})
	if err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, out, `123`)
}

func TestLoadedFilesArePinned(t *testing.T) {
	e := newEnv(t)
	files := map[string][]byte{
		"flows/main.star":     []byte("load('lib/util.star', 'greet')\ndef main(input):\n    sleep('1h')\n    return greet(input)\n"),
		"flows/lib/util.star": []byte("load('../common.star', 'PREFIX')\ndef greet(n):\n    return PREFIX + n\n"),
		"flows/common.star":   []byte("PREFIX = 'hello, '\n"),
	}
	out, err := e.RT.Start(bg, sfrt.StartRequest{ID: "p", Script: "flows/main.star", Sources: files, Input: json.RawMessage(`"ada"`)})
	if err != nil || out.Status != journal.StatusWaiting {
		t.Fatalf("%+v %v", out, err)
	}
	// The files change (here: disappear) before the run resumes.
	e.Clock.Advance(2 * time.Hour)
	runtest.MustResult(t, e.Resume("p"), `"hello, ada"`)
	var st journal.RunStarted
	e.Records("p")[0].Decode(&st)
	if len(st.Script.Files) != 3 || st.Script.Entry != "flows/main.star" {
		t.Fatalf("manifest %+v", st.Script)
	}
}

func TestStartIsIdempotentByID(t *testing.T) {
	e := newEnv(t)
	src := "def main(input):\n    return bump(input)['n']\n"
	first := e.Start("same", src, `1`)
	runtest.MustResult(t, first, `1`)
	second := e.Start("same", src, `1`)
	runtest.MustResult(t, second, `1`)
	if !second.Existed || e.Count.Total() != 1 {
		t.Fatalf("second start executed: %+v, bump ran %d", second, e.Count.Total())
	}
	third := e.Start("same", "def main(input):\n    return 99\n", `2`)
	runtest.MustResult(t, third, `1`)
	if len(third.Notes) != 2 {
		t.Fatalf("notes %v", third.Notes)
	}
}

func TestDurabilityModes(t *testing.T) {
	for _, mode := range []journal.Durability{journal.DurabilitySync, journal.DurabilityAsync, journal.DurabilityExit} {
		t.Run(string(mode), func(t *testing.T) {
			var e *runtest.Env
			seen := -1
			var last journal.Type
			probe := sfrt.Func("probe", func(ctx context.Context, c *sfrt.Call) (any, error) {
				recs, err := e.Store.Records(ctx, c.RunID, 1)
				seen = len(recs)
				if seen > 0 {
					last = recs[seen-1].Type
				}
				return len(recs), err
			})
			probe.Effect = true // bump is not: its call.started goes with its outcome
			e = newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, probe) })
			out, err := e.RT.Start(bg, sfrt.StartRequest{ID: "d", Script: "wf.star", Durability: mode, Sources: map[string][]byte{"wf.star": []byte(
				"def main(input):\n    bump(1)\n    bump(2)\n    return probe()\n")}})
			if err != nil {
				t.Fatal(err)
			}
			runtest.MustResult(t, out, fmt.Sprint(seen))
			// run.started, then started+completed for two bumps, and the
			// probe's own call.started: a call that declares an effect is
			// journaled as in flight before it runs. Exit mode keeps all in
			// memory.
			want := map[journal.Durability]int{journal.DurabilitySync: 6, journal.DurabilityAsync: 6, journal.DurabilityExit: 1}[mode]
			if seen != want {
				t.Fatalf("records visible during the third call: %d, want %d", seen, want)
			}
			if mode != journal.DurabilityExit && last != journal.TypeCallStarted {
				t.Fatalf("the last record visible during the call is %s, want call.started", last)
			}
			if n := len(e.Records("d")); n != 8 {
				t.Fatalf("final journal has %d records, want 8", n)
			}
			meta, _ := e.Store.Run(bg, "d")
			if meta.Durability != mode {
				t.Fatalf("meta durability %s", meta.Durability)
			}
		})
	}
}

func TestExitModeWritesOnSuspend(t *testing.T) {
	e := newEnv(t)
	out, err := e.RT.Start(bg, sfrt.StartRequest{ID: "x", Script: "wf.star", Durability: journal.DurabilityExit, Sources: map[string][]byte{"wf.star": []byte(
		"def main(input):\n    bump(1)\n    sleep('1d')\n    return bump(2)['n']\n")}})
	if err != nil || out.Status != journal.StatusWaiting {
		t.Fatalf("%+v %v", out, err)
	}
	if got := e.Calls("x"); strings.Join(got, ",") != "bump,sleep" {
		t.Fatalf("journal at suspension: %v", got)
	}
	e.Clock.Advance(25 * time.Hour)
	runtest.MustResult(t, e.Resume("x"), `2`)
}

func TestLogIsNotRepeatedOnReplay(t *testing.T) {
	e := newEnv(t)
	e.Start("l", "def main(input):\n    log('before', n=1, who='me')\n    print('printed')\n    sleep('1h')\n    log('after', level='warn')\n    return 1\n", `null`)
	e.Clock.Advance(time.Hour)
	e.Resume("l")
	logs := e.Logs.String()
	if c := strings.Count(logs, `"message":"before"`); c != 1 {
		t.Fatalf("'before' logged %d times:\n%s", c, logs)
	}
	if !strings.Contains(logs, `"who":"me"`) || !strings.Contains(logs, `"n":1`) || strings.Count(logs, `"message":"printed"`) != 1 || !strings.Contains(logs, `"level":"warn","run":"l","source":"script","pos":"wf.star:5:8","message":"after"`) {
		t.Fatalf("logs:\n%s", logs)
	}
	n := 0
	for _, r := range e.Records("l") {
		if r.Type == journal.TypeLog {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d log records, want 3", n)
	}
}

func TestCancel(t *testing.T) {
	started := make(chan struct{})
	block := &sfrt.Builtin{Name: "block", Fn: func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	e := newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, block) })
	// A waiting run is cancelled at once.
	e.Start("w", "def main(input):\n    sleep('1h')\n", `null`)
	out, err := e.RT.Cancel(bg, "w", "alice")
	if err != nil || out.Status != journal.StatusCancelled {
		t.Fatalf("%+v %v", out, err)
	}
	if _, err := e.RT.Cancel(bg, "w", "alice"); !errors.Is(err, sfrt.ErrInvalid) {
		t.Fatalf("second cancel: %v", err)
	}
	recs := e.Records("w")
	var fin journal.RunFinished
	recs[len(recs)-1].Decode(&fin)
	if fin.Status != journal.StatusCancelled || fin.CancelledBy != "alice" {
		t.Fatalf("last record %+v", fin)
	}
	// A running run stops at its builtin boundary.
	done := make(chan *sfrt.Outcome)
	go func() {
		out, _ := e.RT.Start(bg, sfrt.StartRequest{ID: "r", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte("def main(input):\n    block()\n    bump(1)\n")}})
		done <- out
	}()
	<-started
	out, err = e.RT.Cancel(bg, "r", "bob")
	if err != nil || out.Status != journal.StatusCancelled {
		t.Fatalf("%+v %v", out, err)
	}
	if o := <-done; o.Status != journal.StatusCancelled || e.Count.Total() != 0 {
		t.Fatalf("run outcome %+v, bump %d", o, e.Count.Total())
	}
	// A pure-Starlark loop is cancelled too.
	loopStarted := make(chan struct{})
	mark := sfrt.Func("mark", func(ctx context.Context, c *sfrt.Call) (any, error) { close(loopStarted); return nil, nil })
	e2 := newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, mark); o.MaxSteps = 1 << 62 })
	go func() {
		out, _ := e2.RT.Start(bg, sfrt.StartRequest{ID: "spin", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte("def main(input):\n    mark()\n    for i in range(1 << 60):\n        pass\n")}})
		done <- out
	}()
	<-loopStarted
	e2.RT.Cancel(bg, "spin", "carol")
	if o := <-done; o.Status != journal.StatusCancelled {
		t.Fatalf("spin: %+v", o)
	}
}

func TestInterruptLeavesRunResumable(t *testing.T) {
	ctx, cancel := context.WithCancel(bg)
	slow := sfrt.Func("slow", func(c context.Context, call *sfrt.Call) (any, error) {
		cancel()
		<-c.Done()
		return nil, c.Err()
	})
	e := newEnv(t, func(o *sfrt.Options) { o.Builtins = append(o.Builtins, slow) })
	src := map[string][]byte{"wf.star": []byte("def main(input):\n    bump(1)\n    if input:\n        slow()\n    return bump(2)['n']\n")}
	out, err := e.RT.Start(ctx, sfrt.StartRequest{ID: "i", Script: "wf.star", Sources: src, Input: json.RawMessage("true")})
	if !errors.Is(err, sfrt.ErrInterrupted) || out.Status != journal.StatusRunning {
		t.Fatalf("%+v %v", out, err)
	}
	// The interrupted call left no completion; it will run again.
	if calls := e.Calls("i"); strings.Join(calls, ",") != "bump,slow" {
		t.Fatalf("calls %v", calls)
	}
	for _, r := range e.Records("i") {
		if r.Type == journal.TypeCallCompleted {
			var cc journal.CallCompleted
			r.Decode(&cc)
			if cc.Step == "2" {
				t.Fatalf("interrupted call was journaled as completed: %+v", cc)
			}
		}
	}
}

func TestWaitingRunsHoldNoGoroutines(t *testing.T) {
	e := newEnv(t)
	src := "def main(input):\n    now()\n    sleep('1h')\n"
	e.Start("warm", src, `null`)
	runtime.GC()
	before := runtime.NumGoroutine()
	for i := 0; i < 200; i++ {
		if out := e.Start(fmt.Sprintf("w%d", i), src, `null`); out.Status != journal.StatusWaiting {
			t.Fatal(out.Status)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines %d -> %d with 200 waiting runs", before, after)
	}
	if len(e.RT.Active()) != 0 {
		t.Fatalf("active runs: %v", e.RT.Active())
	}
}

func TestCorruptJournalIsReported(t *testing.T) {
	e := newEnv(t)
	e.Start("c", "def main(input):\n    bump(1)\n    sleep('1h')\n", `null`)
	e.Clone("c", "c2", 3, "")
	// Replace record 3 by a record with the wrong step for its completion.
	bad, _ := journal.NewRecord(4, journal.TypeCallCompleted, time.Now(), journal.CallCompleted{Step: "9"})
	if err := e.Store.Append(bg, "c2", []journal.Record{bad}, nil, true); err != nil {
		t.Fatal(err)
	}
	_, err := e.RT.Resume(bg, "c2")
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "step 9") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretsAreJournaledByName(t *testing.T) {
	t.Setenv("SF_TEST_TOKEN", "s3cr3t-value")
	var got string
	use := &sfrt.Builtin{Name: "use", Fn: func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
		s := c.Args[0].(sfrt.Secret)
		v, err := c.Secret(s)
		got = v
		return starlark.String("used " + s.Name), err
	}}
	secret := starlark.NewBuiltin("secret", func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return sfrt.Secret{Name: string(args[0].(starlark.String))}, nil
	})
	e := newEnv(t, func(o *sfrt.Options) {
		o.Builtins = append(o.Builtins, use)
		o.Globals["secret"] = secret
	})
	runtest.MustResult(t, e.Start("s", "def main(input):\n    return use(secret('SF_TEST_TOKEN'))\n", `null`), `"used SF_TEST_TOKEN"`)
	if got != "s3cr3t-value" {
		t.Fatal("secret not resolved")
	}
	for _, r := range e.Records("s") {
		if strings.Contains(string(r.Data), "s3cr3t") {
			t.Fatalf("secret in journal: %s", r.Data)
		}
	}
}

// With CheckSecret set, a builtin can resolve only the secrets it allows:
// another name fails the call with the checker's reason, and the resolver
// is never asked for it.
func TestCheckSecretRefusesUndeclaredNames(t *testing.T) {
	var asked []string
	use := &sfrt.Builtin{Name: "use", Fn: func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
		if _, err := c.Secret(c.Args[0].(sfrt.Secret)); err != nil {
			return nil, err
		}
		return starlark.String("used"), nil
	}}
	secret := starlark.NewBuiltin("secret", func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
		return sfrt.Secret{Name: string(args[0].(starlark.String))}, nil
	})
	e := newEnv(t, func(o *sfrt.Options) {
		o.Builtins = append(o.Builtins, use)
		o.Globals["secret"] = secret
		o.Secrets = func(name string) (string, error) { asked = append(asked, name); return "value-of-" + name, nil }
		o.CheckSecret = func(name string) error {
			if name == "DECLARED" {
				return nil
			}
			return errors.New("not declared (declare it with --secret)")
		}
	})
	runtest.MustResult(t, e.Start("ok", "def main(input):\n    return use(secret('DECLARED'))\n", `null`), `"used"`)
	out := e.Start("no", "def main(input):\n    return use(secret('HOME'))\n", `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "secret" || !strings.HasSuffix(out.Error.Message, "use: secret HOME: not declared (declare it with --secret)") {
		t.Fatalf("outcome %s kind %q: %s", out.Status, out.Error.Kind, out.Error.Message)
	}
	if len(asked) != 1 || asked[0] != "DECLARED" {
		t.Fatalf("resolver asked for %v", asked)
	}
}
