package badgerstore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/starflow/starflow/journal"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeRun(t *testing.T, s *Store, id string, calls int) {
	t.Helper()
	ctx := context.Background()
	r1, _ := journal.NewRecord(1, journal.TypeRunStarted, time.Now(), journal.RunStarted{Input: json.RawMessage(`1`)})
	if err := s.Create(ctx, &journal.Run{ID: id, Status: journal.StatusRunning}, []journal.Record{r1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < calls; i++ {
		rec, _ := journal.NewRecord(uint64(i+2), journal.TypeLog, time.Now(), journal.Log{Message: fmt.Sprint(i)})
		meta := &journal.Run{ID: id, Status: journal.StatusWaiting}
		if err := s.Append(ctx, id, []journal.Record{rec}, meta, true); err != nil {
			t.Fatal(err)
		}
	}
}

// Acknowledged durable writes survive even if Badger lost everything it had
// not synced: the log alone restores them. (Here Badger's files are simply
// absent: the log is copied into an empty directory.)
func TestLogRestoresAcknowledgedWrites(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	s, err := Open(dir1, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeRun(t, s, "w", 20)
	copyFile(t, filepath.Join(dir1, walFile), filepath.Join(dir2, walFile))
	s.Close()

	s2, err := Open(dir2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	recs, err := s2.Records(context.Background(), "w", 1)
	if err != nil || len(recs) != 21 {
		t.Fatalf("recovered %d records, %v; want 21", len(recs), err)
	}
	meta, err := s2.Run(context.Background(), "w")
	if err != nil || meta.Status != journal.StatusWaiting {
		t.Fatalf("meta %+v %v", meta, err)
	}
	// The recovered journal is appendable where it ended.
	rec, _ := journal.NewRecord(22, journal.TypeLog, time.Now(), journal.Log{})
	if err := s2.Append(context.Background(), "w", []journal.Record{rec}, nil, true); err != nil {
		t.Fatal(err)
	}
}

// A record torn by a crash mid-write ends recovery: what came before it is
// restored, nothing after it is trusted.
func TestLogStopsAtATornRecord(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	s, _ := Open(dir1, Options{})
	writeRun(t, s, "t", 10)
	off := s.wal.off
	copyFile(t, filepath.Join(dir1, walFile), filepath.Join(dir2, walFile))
	s.Close()
	// Tear the last record: flip a byte in its payload.
	f, _ := os.OpenFile(filepath.Join(dir2, walFile), os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, off-3)
	f.Close()
	s2, err := Open(dir2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	recs, _ := s2.Records(context.Background(), "t", 1)
	if len(recs) != 10 {
		t.Fatalf("recovered %d records, want 10 (all but the torn one)", len(recs))
	}
}

// After a checkpoint, records of earlier generations are never replayed.
func TestLogGenerationsHideStaleRecords(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	s, _ := Open(dir1, Options{})
	writeRun(t, s, "old", 5)
	if err := s.checkpoint(0); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(dir1, walFile), filepath.Join(dir2, walFile))
	s.Close()
	s2, _ := Open(dir2, Options{})
	defer s2.Close()
	if _, err := s2.Run(context.Background(), "old"); err == nil {
		t.Fatal("a checkpointed generation was replayed")
	}
}

// Filling the log checkpoints and starts a new generation; every record
// stays readable, and recovery after that sees only the new generation.
func TestLogFillsAndCheckpoints(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{})
	gen := s.wal.gen
	big := make([]byte, 64<<10)
	ctx := context.Background()
	r1, _ := journal.NewRecord(1, journal.TypeRunStarted, time.Now(), journal.RunStarted{})
	s.Create(ctx, &journal.Run{ID: "big", Status: journal.StatusRunning}, []journal.Record{r1})
	for i := 0; i < 100; i++ { // 6.4 MB through a 4 MB log
		rec := journal.Record{Seq: uint64(i + 2), Type: journal.TypeLog, Time: time.Now(), Data: []byte(fmt.Sprintf("%q", string(big)))}
		if err := s.Append(ctx, "big", []journal.Record{rec}, nil, i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if s.wal.gen == gen {
		t.Fatal("the log never checkpointed")
	}
	recs, err := s.Records(ctx, "big", 1)
	if err != nil || len(recs) != 101 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	s.Close()
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if recs, _ := s2.Records(ctx, "big", 1); len(recs) != 101 {
		t.Fatalf("after reopen: %d records", len(recs))
	}
}
