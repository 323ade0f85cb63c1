package spec_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

type testCase struct {
	name     string
	src      string
	input    string
	result   string
	status   journal.Status
	err      string
	journal  *[]string
	varies   bool
	maxSteps uint64
}

func parseCase(t *testing.T, path string) testCase {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tc := testCase{name: filepath.Base(path), src: string(src), input: "null", status: journal.StatusCompleted}
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "# ")
		if !ok {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "input":
			tc.input = val
		case "result":
			tc.result = val
		case "status":
			tc.status = journal.Status(val)
		case "error":
			tc.err = val
		case "journal":
			j := strings.Fields(val)
			tc.journal = &j
		case "crash":
			tc.varies = val == "varies"
		case "max-steps":
			tc.maxSteps, _ = strconv.ParseUint(val, 10, 64)
		}
	}
	return tc
}

// drive runs a run to a final status, advancing the clock through sleeps.
func drive(t *testing.T, e *runtest.Env, out *runtime.Outcome) *runtime.Outcome {
	t.Helper()
	for i := 0; out.Status == journal.StatusWaiting; i++ {
		if i > 50 || out.Waiting.Until == nil {
			t.Fatalf("run %s keeps waiting: %+v", out.ID, out.Waiting)
		}
		if d := out.Waiting.Until.Sub(e.Clock.Now()); d > 0 {
			e.Clock.Advance(d)
		}
		out = e.Resume(out.ID)
	}
	return out
}

func check(t *testing.T, tc testCase, what string, out *runtime.Outcome) {
	t.Helper()
	if out.Status != tc.status {
		t.Fatalf("%s: status %s (error %v), want %s", what, out.Status, out.Error, tc.status)
	}
	if tc.result != "" && !runtest.SameJSON(out.Result, []byte(tc.result)) {
		t.Fatalf("%s: result\n  %s\nwant\n  %s", what, out.Result, tc.result)
	}
	if tc.err != "" && (out.Error == nil || !strings.Contains(out.Error.Error(), tc.err)) {
		t.Fatalf("%s: error %v, want it to contain %q", what, out.Error, tc.err)
	}
}

func TestConformance(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.star")
	if len(files) == 0 {
		t.Fatal("no conformance cases")
	}
	for _, f := range files {
		tc := parseCase(t, f)
		t.Run(strings.TrimSuffix(tc.name, ".star"), func(t *testing.T) {
			e := runtest.New(t, func(o *runtime.Options) {
				o.MaxInlineWait = -1 // every sleep suspends; the clock is advanced instead
				if tc.maxSteps > 0 {
					o.MaxSteps = tc.maxSteps
				}
			})
			ref := drive(t, e, e.Start("live", tc.src, tc.input))
			check(t, tc, "live run", ref)
			if tc.journal != nil {
				if got := e.Calls("live"); strings.Join(got, " ") != strings.Join(*tc.journal, " ") {
					t.Fatalf("journal records calls %v, want %v", got, *tc.journal)
				}
			}

			// A full replay executes nothing and ends the same way.
			recs := e.Records("live")
			e.Clone("live", "replay", len(recs), "")
			out := drive(t, e, e.Resume("replay"))
			check(t, tc, "replay", out)
			if out.Stats.Executed != 0 || string(out.Result) != string(ref.Result) {
				t.Fatalf("replay executed %d calls, result %s (live %s)", out.Stats.Executed, out.Result, ref.Result)
			}

			// A crash after any record, then a resume, ends the same way.
			for n := 1; n < len(recs); n++ {
				id := fmt.Sprintf("crash-%d", n)
				e.Clone("live", id, n, "")
				out := drive(t, e, e.Resume(id))
				check(t, tc, id, out)
				if !tc.varies && string(out.Result) != string(ref.Result) {
					t.Fatalf("%s: result %s, live %s", id, out.Result, ref.Result)
				}
			}
		})
	}
}

// The documented journal shape of a simple run, record by record.
func TestJournalShape(t *testing.T) {
	e := runtest.New(t)
	e.Start("shape", "def main(input):\n    bump(input)\n    log('hi')\n    return 1\n", `"x"`)
	var got []string
	for _, r := range e.Records("shape") {
		got = append(got, fmt.Sprintf("%d:%s", r.Seq, r.Type))
	}
	want := "1:run.started 2:call.started 3:call.completed 4:log 5:run.finished"
	if strings.Join(got, " ") != want {
		t.Fatalf("journal %v, want %s", got, want)
	}
	recs := e.Records("shape")
	var cs journal.CallStarted
	recs[1].Decode(&cs)
	if cs.Step != "1" || cs.Builtin != "bump" || string(cs.Args) != `["x"]` || cs.Key != "shape/1" || cs.Pos != "wf.star:2:9" || len(cs.Digest) != 64 {
		t.Fatalf("call.started %+v", cs)
	}
	var cc journal.CallCompleted
	recs[2].Decode(&cc)
	if cc.Step != "1" || !runtest.SameJSON(cc.Result, []byte(`{"n":1,"args":["x"]}`)) || cc.Error != nil {
		t.Fatalf("call.completed %+v", cc)
	}
	var fin journal.RunFinished
	recs[4].Decode(&fin)
	if fin.Status != journal.StatusCompleted || string(fin.Result) != "1" {
		t.Fatalf("run.finished %+v", fin)
	}
}
