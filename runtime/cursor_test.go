package runtime

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/journal"
)

// recordingSink remembers every write the cursor asks for.
type recordingSink struct {
	writes []string
	fail   error
}

func (s *recordingSink) write(recs []journal.Record, durable, meta bool) error {
	if s.fail != nil {
		return s.fail
	}
	var types []string
	for _, r := range recs {
		types = append(types, r.Type.String())
	}
	w := strings.Join(types, "+")
	if meta {
		w += "+meta"
	}
	if durable {
		w += " (fsync)"
	}
	s.writes = append(s.writes, w)
	return nil
}

func startedRecs(t *testing.T, d journal.Durability) []journal.Record {
	rec, err := journal.NewRecord(1, journal.TypeRunStarted, time.Unix(0, 0), journal.RunStarted{Durability: d})
	if err != nil {
		t.Fatal(err)
	}
	return []journal.Record{rec}
}

// The write policy, per durability mode: what reaches the store when, for
// an effectful call, a pure call and a wait.
func TestCursorWritePolicy(t *testing.T) {
	now := func() time.Time { return time.Unix(1, 0) }
	for _, c := range []struct {
		mode journal.Durability
		want string
	}{
		{journal.DurabilitySync, "call.started | call.completed (fsync) | call.started+call.completed (fsync) | call.started+call.waiting (fsync)"},
		{journal.DurabilityAsync, "call.started | call.completed | call.started+call.completed | call.started+call.waiting"},
		{journal.DurabilityExit, ""},
	} {
		s := &recordingSink{}
		cur, err := newCursor("r", startedRecs(t, c.mode), s, now)
		if err != nil {
			t.Fatal(err)
		}
		// An effectful call: its start is written before it runs.
		must(t, cur.start(journal.CallStarted{Step: "1", Builtin: "http.post"}, false))
		must(t, cur.complete(journal.CallCompleted{Step: "1"}, false))
		// A pure call: its start goes with its outcome.
		must(t, cur.start(journal.CallStarted{Step: "2", Builtin: "now"}, true))
		must(t, cur.complete(journal.CallCompleted{Step: "2"}, false))
		// A wait is as durable as a result.
		must(t, cur.start(journal.CallStarted{Step: "3", Builtin: "sleep"}, true))
		must(t, cur.wait(journal.CallWaiting{Step: "3"}))
		if got := strings.Join(s.writes, " | "); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.mode, got, c.want)
		}
		if c.mode == journal.DurabilityExit && len(cur.drain()) != 6 {
			t.Errorf("exit mode should keep the 6 records for the suspension")
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A failed write becomes a storeFailure, and the records stay pending.
func TestCursorWriteFailure(t *testing.T) {
	s := &recordingSink{fail: errors.New("disk on fire")}
	cur, _ := newCursor("r", startedRecs(t, journal.DurabilitySync), s, time.Now)
	err := cur.start(journal.CallStarted{Step: "1", Builtin: "x"}, false)
	var sf *storeFailure
	if !errors.As(err, &sf) || len(cur.pending) != 1 {
		t.Fatalf("err %v, pending %d", err, len(cur.pending))
	}
}

// The cursor answers recorded calls, reports divergence with both
// positions, and knows when replay is over.
func TestCursorMatch(t *testing.T) {
	recs := startedRecs(t, journal.DurabilitySync)
	add := func(typ journal.Type, payload any) {
		rec, err := journal.NewRecord(uint64(len(recs)+1), typ, time.Unix(0, 0), payload)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	args, _ := json.Marshal([]any{"a"})
	add(journal.TypeCallStarted, journal.CallStarted{Step: "1", Builtin: "echo", Digest: "d1", Args: args, Pos: "wf.star:2:9"})
	add(journal.TypeCallCompleted, journal.CallCompleted{Step: "1", Result: json.RawMessage(`"a"`)})
	add(journal.TypeCallStarted, journal.CallStarted{Step: "2", Builtin: "http.post", Digest: "d2", Pos: "wf.star:3:5"})
	cur, err := newCursor("r", recs, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if !cur.replaying() || cur.lastStep != "2" || cur.nextSeq != 5 {
		t.Fatalf("replaying %v last %q next %d", cur.replaying(), cur.lastStep, cur.nextSeq)
	}
	rec, err := cur.match("1", "echo", "d1", "wf.star:2:9", nil)
	if err != nil || rec == nil || rec.completed == nil {
		t.Fatalf("step 1: %+v %v", rec, err)
	}
	_, err = cur.match("2", "http.get", "d9", "wf.star:3:5", func() string { return `http.get("x")` })
	var de *DivergenceError
	if !errors.As(err, &de) || de.RecordedPos != "wf.star:3:5" || de.GotPos != "wf.star:3:5" || de.Reason != "a different builtin" {
		t.Fatalf("divergence %v", err)
	}
	if cur.replaying() {
		t.Fatal("still replaying after the last recorded step")
	}
	if rec, _ := cur.match("3", "echo", "d", "", nil); rec != nil {
		t.Fatal("step 3 is not in the journal")
	}
}

// Journals that contradict themselves are corrupt, never replayed.
func TestCursorRefusesContradictions(t *testing.T) {
	for name, build := range map[string]func(add func(journal.Type, any)){
		"completed without started": func(add func(journal.Type, any)) {
			add(journal.TypeCallCompleted, journal.CallCompleted{Step: "1"})
		},
		"two starts": func(add func(journal.Type, any)) {
			add(journal.TypeCallStarted, journal.CallStarted{Step: "1"})
			add(journal.TypeCallStarted, journal.CallStarted{Step: "1"})
		},
		"two outcomes": func(add func(journal.Type, any)) {
			add(journal.TypeCallStarted, journal.CallStarted{Step: "1"})
			add(journal.TypeCallCompleted, journal.CallCompleted{Step: "1"})
			add(journal.TypeCallCompleted, journal.CallCompleted{Step: "1"})
		},
		"after the end": func(add func(journal.Type, any)) {
			add(journal.TypeRunFinished, journal.RunFinished{Status: journal.StatusCompleted})
			add(journal.TypeLog, journal.Log{})
		},
	} {
		recs := startedRecs(t, journal.DurabilitySync)
		build(func(typ journal.Type, payload any) {
			rec, _ := journal.NewRecord(uint64(len(recs)+1), typ, time.Unix(0, 0), payload)
			recs = append(recs, rec)
		})
		_, err := newCursor("r", recs, nil, time.Now)
		if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "run r") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := newCursor("r", nil, nil, time.Now); !errors.Is(err, journal.ErrCorrupt) {
		t.Errorf("empty journal: %v", err)
	}
}
