package badgerstore

import (
	"fmt"
	"testing"

	"github.com/starflow/starflow/journal"
)

// The committer's per-run caches forget a run once it is final, so that a
// long-lived server does not grow with every run it ever finished.
func TestCacheForgetsFinishedRuns(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for i := 0; i < 300; i++ {
		id := fmt.Sprintf("f%d", i)
		if err := s.Create(bg, meta(id, journal.StatusRunning), []journal.Record{started(t)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Deliver(bg, id, journal.Message{Kind: journal.MessageSignal, Name: "go"}, nil); err != nil {
			t.Fatal(err)
		}
		fin := mkrec(t, 2, journal.TypeRunFinished, journal.RunFinished{Status: journal.StatusCompleted})
		if err := s.Append(bg, id, []journal.Record{fin}, meta(id, journal.StatusCompleted), false); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // the committer is done: its maps can be read
	if n, m := len(s.lastSeq), len(s.lastMsg); n != 0 || m != 0 {
		t.Fatalf("after 300 finished runs the caches hold %d and %d entries", n, m)
	}
}

// Runs that never finish (abandoned, or waiting for months) do not grow
// the caches past their bound either.
func TestCacheIsBounded(t *testing.T) {
	defer func(n int) { maxCachedRuns = n }(maxCachedRuns)
	maxCachedRuns = 40
	s := mustOpen(t, t.TempDir())
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("w%d", i)
		if err := s.Create(bg, meta(id, journal.StatusWaiting), []journal.Record{started(t)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Deliver(bg, id, journal.Message{Kind: journal.MessageSignal, Name: "go"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Evicted runs are read from the database again: sequence checks hold.
	if err := s.Append(bg, "w0", []journal.Record{mkrec(t, 2, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(bg, "w0", []journal.Record{mkrec(t, 2, journal.TypeLog, journal.Log{})}, nil, true); err == nil {
		t.Fatal("a rewrite of record 2 was accepted after eviction")
	}
	if seq, err := s.Deliver(bg, "w1", journal.Message{Kind: journal.MessageSignal, Name: "again"}, nil); err != nil || seq != 2 {
		t.Fatalf("Deliver after eviction: %d, %v", seq, err)
	}
	s.Close()
	if n, m := len(s.lastSeq), len(s.lastMsg); n > maxCachedRuns || m > maxCachedRuns {
		t.Fatalf("caches hold %d and %d entries, bound %d", n, m, maxCachedRuns)
	}
}
