package badgerstore_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
)

// Records are appended to a run's journal and read back verified.
func Example() {
	dir, _ := os.MkdirTemp("", "starflow-store")
	defer os.RemoveAll(dir)
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

	first, _ := journal.NewRecord(1, journal.TypeRunStarted, at, journal.RunStarted{Input: []byte(`{"n":1}`)})
	run := &journal.Run{ID: "r1", Status: journal.StatusRunning, CreatedAt: at}
	if err := s.Create(ctx, run, []journal.Record{first}); err != nil {
		panic(err)
	}
	call, _ := journal.NewRecord(2, journal.TypeCallStarted, at, journal.CallStarted{Step: "1", Builtin: "now", Key: "r1/1"})
	if err := s.Append(ctx, "r1", []journal.Record{call}, nil, true); err != nil {
		panic(err)
	}
	// Sequence numbers are never reused.
	fmt.Println(s.Append(ctx, "r1", []journal.Record{call}, nil, true) != nil)

	recs, _ := s.Records(ctx, "r1", 1)
	for _, r := range recs {
		fmt.Println(r.Seq, r.Type)
	}
	// Output:
	// true
	// 1 run.started
	// 2 call.started
}
