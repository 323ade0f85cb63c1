package main

import (
	"testing"
	"time"
)

// The checks on made-up timelines: no process runs here.
func TestClassify(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	keys := []string{"r/1", "r/3", "r/5"}
	completed := map[string]time.Time{"r/1": at(10), "r/3": at(40), "r/5": at(60)}

	t.Run("in flight at the kill", func(t *testing.T) {
		// r/3 was sent at 20, the process died at 25 before journaling
		// it, and the resumed process sent it again at 35.
		reqs := map[string][]request{"r/1": {{at(5), 0}}, "r/3": {{at(20), 1}, {at(35), 1}}, "r/5": {{at(50), 2}}}
		v := classify(keys, completed, reqs, []time.Time{at(25)})
		if v.reexecuted != 1 || len(v.completedRepeats) != 0 || len(v.passed) != 0 || len(v.lost) != 0 {
			t.Errorf("got %+v, want one re-execution", v)
		}
	})
	t.Run("completed step repeated", func(t *testing.T) {
		// r/1's completion was journaled at 10; it was sent again at 30.
		reqs := map[string][]request{"r/1": {{at(5), 0}, {at(30), 0}}, "r/3": {{at(35), 1}}, "r/5": {{at(50), 2}}}
		v := classify(keys, completed, reqs, []time.Time{at(25)})
		if len(v.completedRepeats) != 1 {
			t.Errorf("got %+v, want one completed repeat", v)
		}
	})
	t.Run("passed call re-executed", func(t *testing.T) {
		// r/1 and r/3 were sent before the kill at 25, r/1 again after
		// it: the script had passed r/1, so its completion was lost.
		completed := map[string]time.Time{"r/1": at(32), "r/3": at(40), "r/5": at(60)}
		reqs := map[string][]request{"r/1": {{at(5), 0}, {at(30), 0}}, "r/3": {{at(20), 1}, {at(35), 1}}, "r/5": {{at(50), 2}}}
		v := classify(keys, completed, reqs, []time.Time{at(25)})
		if len(v.passed) != 1 || v.reexecuted != 2 || len(v.completedRepeats) != 0 {
			t.Errorf("got %+v, want r/1 passed and two re-executions", v)
		}
	})
	t.Run("lost and extra", func(t *testing.T) {
		reqs := map[string][]request{"r/1": {{at(5), 0}}, "r/3": {{at(20), 1}}, "r/7": {{at(55), 3}}}
		v := classify(keys, completed, reqs, nil)
		if len(v.lost) != 1 || len(v.extra) != 1 {
			t.Errorf("got %+v, want r/5 lost and r/7 extra", v)
		}
	})
}

func TestExpectedSteps(t *testing.T) {
	for _, c := range []struct {
		kind string
		want []int
	}{
		{"chain", []int{1, 3, 5, 7}},
		{"signal", []int{1, 3, 6, 8}}, // wait_signal is step 5
	} {
		got := expectedSteps(c.kind, 4)
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: steps %v, want %v", c.kind, got, c.want)
				break
			}
		}
	}
}

func TestOpenCause(t *testing.T) {
	mem := `starflow: open store /s: while opening memtables err: while opening fid: 4 err: Create a new file`
	vlog := `starflow: open store /s: During db.vlog.open err: Open existing file: "/s/000074.vlog" err: Create a new file`
	for _, c := range []struct{ stderr, afterKill, now, want string }{
		{mem, "000015.sst 25603, 00004.mem 0", "00004.mem 33554432", "a zero-length memtable (.mem) file left by the kill (the failed open extended it: true)"},
		{vlog, "000074.vlog 0, MANIFEST 16", "000074.vlog 33554432", "a zero-length value log (.vlog) file left by the kill (the failed open extended it: true)"},
		{mem, "00004.mem 7478", "00004.mem 7478", "a memtable (.mem) file of 7478 bytes after the kill"},
		{"starflow: something else", "", "", "other (see the findings)"},
	} {
		if got := openCause(c.stderr, c.afterKill, c.now); got != c.want {
			t.Errorf("openCause(%q) = %q, want %q", c.stderr, got, c.want)
		}
	}
}
