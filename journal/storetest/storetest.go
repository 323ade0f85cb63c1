// Package storetest is the behavioural test suite every journal.Store must
// pass. A backend's tests call Run with a constructor for fresh stores, or
// RunWith to also pass the hooks the tests of damage and of a full disk
// need (how to damage data or fill a disk is the backend's business).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starflow/starflow/journal"
)

// Opener returns a new, empty store, and a function that closes it and
// opens it again on the same data (to check persistence).
type Opener func(t *testing.T) (s journal.Store, reopen func() journal.Store)

// Hooks let the suite do what only the backend knows how to. A nil hook
// skips the tests that need it.
type Hooks struct {
	// DamageRun damages run id's stored metadata, as a bad disk would.
	DamageRun func(t *testing.T, s journal.Store, id string)
	// DamageRecord damages the stored record seq of run id.
	DamageRecord func(t *testing.T, s journal.Store, id string, seq uint64)
	// Full makes the store see a full disk (full) or free space again.
	Full func(t *testing.T, s journal.Store, full bool)
}

// Run runs the suite.
func Run(t *testing.T, open Opener) { RunWith(t, open, Hooks{}) }

// RunWith runs the suite with the backend's hooks.
func RunWith(t *testing.T, open Opener, h Hooks) {
	t.Run("CreateAndRead", func(t *testing.T) { testCreateAndRead(t, open) })
	t.Run("CreateIsExclusive", func(t *testing.T) { testCreateExclusive(t, open) })
	t.Run("AppendOnly", func(t *testing.T) { testAppendOnly(t, open) })
	t.Run("RecordsFrom", func(t *testing.T) { testRecordsFrom(t, open) })
	t.Run("ListFilterAndOrder", func(t *testing.T) { testList(t, open) })
	t.Run("Blobs", func(t *testing.T) { testBlobs(t, open) })
	t.Run("Persistence", func(t *testing.T) { testPersistence(t, open) })
	t.Run("ConcurrentRuns", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("Inbox", func(t *testing.T) { testInbox(t, open) })
	t.Run("LargeValues", func(t *testing.T) { testLargeValues(t, open) })
	t.Run("TooLarge", func(t *testing.T) { testTooLarge(t, open) })
	t.Run("PartialList", func(t *testing.T) {
		if h.DamageRun == nil {
			t.Skip("no DamageRun hook")
		}
		testPartialList(t, open, h)
	})
	t.Run("JournalStart", func(t *testing.T) {
		if h.DamageRecord == nil {
			t.Skip("no DamageRecord hook")
		}
		testJournalStart(t, open, h)
	})
	t.Run("NoSpace", func(t *testing.T) {
		if h.Full == nil {
			t.Skip("no Full hook")
		}
		testNoSpace(t, open, h)
	})
}

var ctx = context.Background()

func rec(t *testing.T, seq uint64, typ journal.Type, payload any) journal.Record {
	t.Helper()
	r, err := journal.NewRecord(seq, typ, time.Unix(1700000000, int64(seq)).UTC(), payload)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newRun(id string, at time.Time) *journal.Run {
	return &journal.Run{ID: id, Status: journal.StatusRunning, Script: "x.star", CreatedAt: at, UpdatedAt: at, Durability: journal.DurabilitySync}
}

func create(t *testing.T, s journal.Store, id string, at time.Time) {
	t.Helper()
	err := s.Create(ctx, newRun(id, at), []journal.Record{rec(t, 1, journal.TypeRunStarted, journal.RunStarted{Input: json.RawMessage(`{}`)})})
	if err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
}

func testCreateAndRead(t *testing.T, open Opener) {
	s, _ := open(t)
	create(t, s, "run-1", time.Unix(100, 0).UTC())
	r, err := s.Run(ctx, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "run-1" || r.Status != journal.StatusRunning || r.Script != "x.star" {
		t.Fatalf("Run = %+v", r)
	}
	recs, err := s.Records(ctx, "run-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Seq != 1 || recs[0].Type != journal.TypeRunStarted {
		t.Fatalf("Records = %+v", recs)
	}
	var rs journal.RunStarted
	if err := recs[0].Decode(&rs); err != nil || string(rs.Input) != "{}" {
		t.Fatalf("payload = %+v, %v", rs, err)
	}
	if _, err := s.Run(ctx, "nope"); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("Run(nope) err = %v, want ErrNotFound", err)
	}
	if recs, err := s.Records(ctx, "nope", 1); err != nil || len(recs) != 0 {
		t.Fatalf("Records(nope) = %v, %v; want empty", recs, err)
	}
}

func testCreateExclusive(t *testing.T, open Opener) {
	s, _ := open(t)
	create(t, s, "dup", time.Unix(100, 0))
	err := s.Create(ctx, newRun("dup", time.Unix(200, 0)), []journal.Record{rec(t, 1, journal.TypeRunStarted, journal.RunStarted{})})
	if !errors.Is(err, journal.ErrRunExists) {
		t.Fatalf("second Create err = %v, want ErrRunExists", err)
	}
	r, _ := s.Run(ctx, "dup")
	if !r.CreatedAt.Equal(time.Unix(100, 0)) {
		t.Fatalf("second Create changed the run: %+v", r)
	}
	// Concurrent creates: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Create(ctx, newRun("race", time.Unix(1, 0)), []journal.Record{rec(t, 1, journal.TypeRunStarted, journal.RunStarted{})})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, journal.ErrRunExists) {
				t.Errorf("Create(race): %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent creates succeeded, want 1", wins)
	}
	if err := s.Create(ctx, newRun("bad/id", time.Unix(1, 0)), []journal.Record{rec(t, 1, journal.TypeRunStarted, journal.RunStarted{})}); err == nil {
		t.Fatal("Create accepted an id with a slash")
	}
}

func testAppendOnly(t *testing.T, open Opener) {
	s, _ := open(t)
	create(t, s, "a", time.Unix(1, 0))
	if err := s.Append(ctx, "a", []journal.Record{rec(t, 2, journal.TypeCallStarted, journal.CallStarted{Step: "1"})}, nil, true); err != nil {
		t.Fatal(err)
	}
	// Rewriting an existing sequence number is refused.
	err := s.Append(ctx, "a", []journal.Record{rec(t, 2, journal.TypeCallStarted, journal.CallStarted{Step: "X"})}, nil, true)
	if !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("rewrite err = %v, want ErrConflict", err)
	}
	// A gap is refused.
	err = s.Append(ctx, "a", []journal.Record{rec(t, 4, journal.TypeCallCompleted, journal.CallCompleted{Step: "1"})}, nil, false)
	if !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("gap err = %v, want ErrConflict", err)
	}
	// Non-contiguous records in one append are refused.
	err = s.Append(ctx, "a", []journal.Record{rec(t, 3, journal.TypeLog, journal.Log{}), rec(t, 5, journal.TypeLog, journal.Log{})}, nil, false)
	if !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("non-contiguous err = %v, want ErrConflict", err)
	}
	// Appending to a run that does not exist is refused.
	err = s.Append(ctx, "ghost", []journal.Record{rec(t, 2, journal.TypeLog, journal.Log{})}, nil, false)
	if !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("append to missing run err = %v, want ErrNotFound", err)
	}
	// Records and metadata change together.
	meta := newRun("a", time.Unix(1, 0))
	meta.Status = journal.StatusCompleted
	meta.Result = json.RawMessage(`42`)
	if err := s.Append(ctx, "a", []journal.Record{rec(t, 3, journal.TypeRunFinished, journal.RunFinished{Status: journal.StatusCompleted})}, meta, true); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Records(ctx, "a", 1)
	if err != nil || len(recs) != 3 {
		t.Fatalf("Records = %d, %v; want 3", len(recs), err)
	}
	var cs journal.CallStarted
	if err := recs[1].Decode(&cs); err != nil || cs.Step != "1" {
		t.Fatalf("record 2 = %+v (rewritten?)", cs)
	}
	r, _ := s.Run(ctx, "a")
	if r.Status != journal.StatusCompleted || string(r.Result) != "42" {
		t.Fatalf("meta = %+v", r)
	}
}

func testRecordsFrom(t *testing.T, open Opener) {
	s, _ := open(t)
	create(t, s, "r", time.Unix(1, 0))
	var recs []journal.Record
	for i := uint64(2); i <= 300; i++ {
		recs = append(recs, rec(t, i, journal.TypeLog, journal.Log{Message: fmt.Sprint(i)}))
	}
	if err := s.Append(ctx, "r", recs, nil, false); err != nil {
		t.Fatal(err)
	}
	// A run whose ID is a prefix of another's must not see its records.
	create(t, s, "r2", time.Unix(1, 0))
	got, err := s.Records(ctx, "r", 250)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 51 || got[0].Seq != 250 || got[50].Seq != 300 {
		t.Fatalf("Records(from 250) = %d records, first %d", len(got), got[0].Seq)
	}
	all, _ := s.Records(ctx, "r", 0)
	if len(all) != 300 {
		t.Fatalf("Records(from 0) = %d, want 300", len(all))
	}
}

func testList(t *testing.T, open Opener) {
	s, _ := open(t)
	for i, st := range []journal.Status{journal.StatusCompleted, journal.StatusWaiting, journal.StatusFailed, journal.StatusWaiting} {
		id := fmt.Sprintf("l%d", i)
		create(t, s, id, time.Unix(int64(100+i), 0).UTC())
		m := newRun(id, time.Unix(int64(100+i), 0).UTC())
		m.Status = st
		if err := s.Append(ctx, id, nil, m, true); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.List(ctx, journal.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[0].ID != "l3" || all[3].ID != "l0" {
		t.Fatalf("List order: %v", ids(all))
	}
	w, _ := s.List(ctx, journal.Filter{Status: []journal.Status{journal.StatusWaiting}})
	if len(w) != 2 || w[0].ID != "l3" || w[1].ID != "l1" {
		t.Fatalf("List(waiting) = %v", ids(w))
	}
	lim, _ := s.List(ctx, journal.Filter{Limit: 1})
	if len(lim) != 1 || lim[0].ID != "l3" {
		t.Fatalf("List(limit 1) = %v", ids(lim))
	}
}

func ids(rs []*journal.Run) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func testBlobs(t *testing.T, open Opener) {
	s, _ := open(t)
	h1, err := s.PutBlob(ctx, []byte("def main(input):\n  return 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := s.PutBlob(ctx, []byte("def main(input):\n  return 1\n"))
	if h1 != h2 || len(h1) != len("sha256:")+64 {
		t.Fatalf("hashes %q %q", h1, h2)
	}
	b, err := s.Blob(ctx, h1)
	if err != nil || string(b) != "def main(input):\n  return 1\n" {
		t.Fatalf("Blob = %q, %v", b, err)
	}
	if _, err := s.Blob(ctx, "sha256:00"); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("missing blob err = %v", err)
	}
}

func testPersistence(t *testing.T, open Opener) {
	s, reopen := open(t)
	create(t, s, "p", time.Unix(5, 0).UTC())
	if err := s.Append(ctx, "p", []journal.Record{rec(t, 2, journal.TypeLog, journal.Log{Message: "async"})}, nil, false); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	recs, err := s.Records(ctx, "p", 1)
	if err != nil || len(recs) != 2 {
		t.Fatalf("after reopen: %d records, %v", len(recs), err)
	}
	// The sequence check survives the restart.
	if err := s.Append(ctx, "p", []journal.Record{rec(t, 2, journal.TypeLog, journal.Log{})}, nil, true); !errors.Is(err, journal.ErrConflict) {
		t.Fatalf("rewrite after reopen err = %v", err)
	}
	if err := s.Append(ctx, "p", []journal.Record{rec(t, 3, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatal(err)
	}
}

func testConcurrent(t *testing.T, open Opener) {
	s, _ := open(t)
	const runs, steps = 20, 30
	var wg sync.WaitGroup
	for i := 0; i < runs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("c%02d", i)
			create(t, s, id, time.Unix(int64(i), 0))
			for seq := uint64(2); seq < steps; seq++ {
				if err := s.Append(ctx, id, []journal.Record{rec(t, seq, journal.TypeLog, journal.Log{Message: id})}, nil, seq%2 == 0); err != nil {
					t.Errorf("%s append %d: %v", id, seq, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	for i := 0; i < runs; i++ {
		id := fmt.Sprintf("c%02d", i)
		recs, err := s.Records(ctx, id, 1)
		if err != nil || len(recs) != steps-1 {
			t.Fatalf("%s: %d records, %v", id, len(recs), err)
		}
		for _, r := range recs[1:] {
			var l journal.Log
			if err := r.Decode(&l); err != nil || l.Message != id {
				t.Fatalf("%s seq %d holds %q", id, r.Seq, l.Message)
			}
		}
	}
}

func testInbox(t *testing.T, open Opener) {
	s, reopen := open(t)
	if _, err := s.Deliver(ctx, "ghost", journal.Message{Kind: journal.MessageSignal, Name: "x"}, nil); !errors.Is(err, journal.ErrNotFound) {
		t.Fatalf("deliver to missing run: %v", err)
	}
	create(t, s, "in", time.Unix(1, 0))
	for i, name := range []string{"go", "stop", "go"} {
		seq, err := s.Deliver(ctx, "in", journal.Message{Kind: journal.MessageSignal, Name: name, Value: json.RawMessage(fmt.Sprint(i)), From: "test"}, nil)
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("Deliver %d: seq %d, %v", i, seq, err)
		}
	}
	s = reopen()
	seq, err := s.Deliver(ctx, "in", journal.Message{Kind: journal.MessageAnswer, Value: json.RawMessage(`"yes"`)}, nil)
	if err != nil || seq != 4 {
		t.Fatalf("Deliver after reopen: %d %v", seq, err)
	}
	msgs, err := s.Inbox(ctx, "in", 2)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("Inbox(from 2) = %d, %v", len(msgs), err)
	}
	if msgs[0].Seq != 2 || msgs[0].Name != "stop" || string(msgs[0].Value) != "1" || msgs[0].From != "test" || msgs[0].Time.IsZero() {
		t.Fatalf("message %+v", msgs[0])
	}
	if msgs[2].Kind != journal.MessageAnswer || string(msgs[2].Value) != `"yes"` {
		t.Fatalf("message %+v", msgs[2])
	}
	// Inboxes do not mix with journals.
	if recs, _ := s.Records(ctx, "in", 1); len(recs) != 1 {
		t.Fatalf("journal has %d records", len(recs))
	}
	// With metadata, the delivery and the run's new Inbox land together.
	meta, err := s.Run(ctx, "in")
	if err != nil {
		t.Fatal(err)
	}
	meta.Status = journal.StatusWaiting
	seq, err = s.Deliver(ctx, "in", journal.Message{Kind: journal.MessageSignal, Name: "go"}, meta)
	if err != nil || seq != 5 {
		t.Fatalf("Deliver with metadata: %d %v", seq, err)
	}
	s = reopen()
	meta, err = s.Run(ctx, "in")
	if err != nil || meta.Inbox != 5 || meta.Status != journal.StatusWaiting {
		t.Fatalf("metadata after Deliver: %+v %v", meta, err)
	}
}

// big is a JSON string of n bytes.
func big(n int) json.RawMessage {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz"[i%26]
	}
	b[0], b[n-1] = '"', '"'
	return b
}

// A store holds records, messages, blobs and metadata up to
// journal.MaxRecordBytes, and reads them back intact after a restart.
func testLargeValues(t *testing.T, open Opener) {
	s, reopen := open(t)
	val := big(20 << 20)
	create(t, s, "lv", time.Unix(1, 0))
	rec := journal.Record{Seq: 2, Type: journal.TypeCallCompleted, Time: time.Unix(2, 0).UTC(), Data: val}
	m := newRun("lv", time.Unix(1, 0))
	m.Result = big(2 << 20)
	if err := s.Append(ctx, "lv", []journal.Record{rec, rec3(t)}, m, true); err != nil {
		t.Fatalf("Append of a 20 MiB record: %v", err)
	}
	if _, err := s.Deliver(ctx, "lv", journal.Message{Kind: journal.MessageAnswer, Value: big(3 << 20)}, nil); err != nil {
		t.Fatalf("Deliver of a 3 MiB message: %v", err)
	}
	blob := []byte(big(5 << 20))
	h, err := s.PutBlob(ctx, blob)
	if err != nil {
		t.Fatalf("PutBlob of 5 MiB: %v", err)
	}
	s = reopen()
	recs, err := s.Records(ctx, "lv", 1)
	if err != nil || len(recs) != 3 || string(recs[1].Data) != string(val) || recs[2].Seq != 3 {
		t.Fatalf("Records: %d, %v", len(recs), err)
	}
	r, err := s.Run(ctx, "lv")
	if err != nil || string(r.Result) != string(m.Result) {
		t.Fatalf("Run: %v", err)
	}
	msgs, err := s.Inbox(ctx, "lv", 1)
	if err != nil || len(msgs) != 1 || len(msgs[0].Value) != 3<<20 {
		t.Fatalf("Inbox: %v", err)
	}
	if b, err := s.Blob(ctx, h); err != nil || string(b) != string(blob) {
		t.Fatalf("Blob: %v", err)
	}
}

func rec3(t *testing.T) journal.Record {
	return rec(t, 3, journal.TypeLog, journal.Log{Message: "after"})
}

// Over journal.MaxRecordBytes: refused with ErrTooLarge, naming the run and
// the record, without the value in the message, and nothing is written.
func testTooLarge(t *testing.T, open Opener) {
	s, _ := open(t)
	create(t, s, "tl", time.Unix(1, 0))
	val := make([]byte, journal.MaxRecordBytes+1)
	for i := range val {
		val[i] = 'z'
	}
	err := s.Append(ctx, "tl", []journal.Record{{Seq: 2, Type: journal.TypeCallCompleted, Time: time.Unix(2, 0), Data: val}}, nil, true)
	if !errors.Is(err, journal.ErrTooLarge) || !strings.Contains(err.Error(), "tl") || !strings.Contains(err.Error(), "record 2") {
		t.Fatalf("Append: %.300v", err)
	}
	if len(err.Error()) > 500 || strings.Contains(err.Error(), "zzzz") {
		t.Fatalf("the error carries the value: %.300s", err)
	}
	if _, err := s.Deliver(ctx, "tl", journal.Message{Kind: journal.MessageAnswer, Value: val}, nil); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("Deliver: %.300v", err)
	}
	if _, err := s.PutBlob(ctx, val); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("PutBlob: %.300v", err)
	}
	if recs, err := s.Records(ctx, "tl", 1); err != nil || len(recs) != 1 {
		t.Fatalf("Records: %d, %v", len(recs), err)
	}
	if msgs, err := s.Inbox(ctx, "tl", 1); err != nil || len(msgs) != 0 {
		t.Fatalf("Inbox: %d, %v", len(msgs), err)
	}
	if err := s.Append(ctx, "tl", []journal.Record{rec(t, 2, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatal(err)
	}
}

// One damaged run does not hide the others: List returns them with a
// *CorruptRunsError naming the damaged one; Run reports it as corrupt.
func testPartialList(t *testing.T, open Opener, h Hooks) {
	s, _ := open(t)
	for i, id := range []string{"p1", "p2", "p3"} {
		create(t, s, id, time.Unix(int64(10+i), 0).UTC())
	}
	h.DamageRun(t, s, "p2")
	runs, err := s.List(ctx, journal.Filter{})
	var cre *journal.CorruptRunsError
	var ce *journal.CorruptError
	if !errors.As(err, &cre) || !errors.Is(err, journal.ErrCorrupt) || !errors.As(err, &ce) || ce.RunID != "p2" {
		t.Fatalf("List err = %v, want a CorruptRunsError naming p2", err)
	}
	if len(cre.Runs) != 1 || !strings.Contains(err.Error(), "p2") {
		t.Fatalf("List err names %d runs: %v", len(cre.Runs), err)
	}
	if got := ids(runs); len(got) != 2 || got[0] != "p3" || got[1] != "p1" {
		t.Fatalf("List = %v, want [p3 p1]", got)
	}
	// The limit counts readable runs; the damaged one is still reported.
	runs, err = s.List(ctx, journal.Filter{Limit: 1, Status: []journal.Status{journal.StatusRunning}})
	if len(runs) != 1 || runs[0].ID != "p3" || !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("List(limit 1) = %v, %v", ids(runs), err)
	}
	if _, err := s.Run(ctx, "p2"); !errors.As(err, &ce) || ce.RunID != "p2" {
		t.Fatalf("Run(p2) err = %v", err)
	}
	if r, err := s.Run(ctx, "p1"); err != nil || r.ID != "p1" {
		t.Fatalf("Run(p1) = %v", err)
	}
}

// A run whose journal does not begin with a valid run.started record is
// corrupt: Run and List say so, not only Records.
func testJournalStart(t *testing.T, open Opener, h Hooks) {
	s, _ := open(t)
	create(t, s, "js", time.Unix(1, 0))
	create(t, s, "ok", time.Unix(2, 0))
	h.DamageRecord(t, s, "js", 1)
	var ce *journal.CorruptError
	if _, err := s.Run(ctx, "js"); !errors.As(err, &ce) || ce.RunID != "js" {
		t.Fatalf("Run err = %v", err)
	}
	runs, err := s.List(ctx, journal.Filter{})
	if !errors.As(err, &ce) || ce.RunID != "js" || len(runs) != 1 || runs[0].ID != "ok" {
		t.Fatalf("List = %v, %v", ids(runs), err)
	}
	if _, err := s.Records(ctx, "js", 1); !errors.As(err, &ce) || ce.Seq != 1 {
		t.Fatalf("Records err = %v", err)
	}
}

// On a full disk writes fail with ErrNoSpace and reads work; once space
// returns, writes go on where they stopped.
func testNoSpace(t *testing.T, open Opener, h Hooks) {
	s, _ := open(t)
	create(t, s, "ns", time.Unix(1, 0))
	h.Full(t, s, true)
	err := s.Append(ctx, "ns", []journal.Record{rec(t, 2, journal.TypeLog, journal.Log{})}, nil, true)
	if !errors.Is(err, journal.ErrNoSpace) {
		t.Fatalf("Append on a full disk: %v", err)
	}
	if err := s.Create(ctx, newRun("ns2", time.Unix(2, 0)), []journal.Record{rec(t, 1, journal.TypeRunStarted, journal.RunStarted{})}); !errors.Is(err, journal.ErrNoSpace) {
		t.Fatalf("Create on a full disk: %v", err)
	}
	if recs, err := s.Records(ctx, "ns", 1); err != nil || len(recs) != 1 {
		t.Fatalf("Records on a full disk: %d, %v", len(recs), err)
	}
	if _, err := s.List(ctx, journal.Filter{}); err != nil {
		t.Fatalf("List on a full disk: %v", err)
	}
	h.Full(t, s, false)
	if err := s.Append(ctx, "ns", []journal.Record{rec(t, 2, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatalf("Append once space returned: %v", err)
	}
}
