package badgerstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/starflow/starflow/journal"
)

// syncRecorder records which files are synced, in order, and can make
// syncs of one file fail.
type syncRecorder struct {
	mu     sync.Mutex
	synced []string
	failOn string // base name whose syncs fail with EIO
	failed chan struct{}
}

func (r *syncRecorder) fsync(f *os.File, dataOnly bool) error {
	name := filepath.Base(f.Name())
	r.mu.Lock()
	fail := r.failOn != "" && name == r.failOn
	if !fail {
		r.synced = append(r.synced, name)
	}
	r.mu.Unlock()
	if fail {
		select {
		case r.failed <- struct{}{}:
		default:
		}
		return syscall.EIO
	}
	return osSync(f, dataOnly)
}

func (r *syncRecorder) reset() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.synced
	r.synced = nil
	return out
}

func (r *syncRecorder) setFail(name string) {
	r.mu.Lock()
	r.failOn = name
	r.mu.Unlock()
}

// A checkpoint syncs every .mem and .vlog file (Badger's own Sync covers
// only the active memtable and value log), the MANIFEST and the directory,
// and only then starts a new log generation, which discards the log's
// records.
func TestCheckpointSyncsBadgerFiles(t *testing.T) {
	dir := t.TempDir()
	rec := &syncRecorder{}
	s, err := Open(dir, Options{fsync: rec.fsync, SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fixture(t, s, 0)
	rec.reset()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	got := rec.reset()
	want := append(filesWith(t, dir, ".mem", ".vlog"), "MANIFEST", filepath.Base(dir), walFile)
	if len(filesWith(t, dir, ".mem")) == 0 || len(filesWith(t, dir, ".vlog")) == 0 {
		t.Fatalf("no .mem or .vlog file to sync: %v", filesWith(t, dir, ""))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("checkpoint synced %v, want %v (in that order)", got, want)
	}
}

// A failed fdatasync of the log fails the store (fsyncgate: the kernel may
// have dropped the data, so a retry that succeeds proves nothing): the
// write that saw it fails, every later write fails with an error wrapping
// the cause, and Close reports it. After reopening, the run goes on.
func TestFailedFsyncFailsTheStore(t *testing.T) {
	dir := t.TempDir()
	rec := &syncRecorder{}
	s, err := Open(dir, Options{fsync: rec.fsync, SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	writeRun(t, s, "r", 2)
	rec.setFail(walFile)
	err = s.Append(bg, "r", []journal.Record{mkrec(t, 4, journal.TypeLog, journal.Log{})}, nil, true)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("durable append with a failing fdatasync: %v", err)
	}
	rec.setFail("")
	err = s.Append(bg, "r", []journal.Record{mkrec(t, 5, journal.TypeLog, journal.Log{})}, nil, false)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "open it again") {
		t.Fatalf("a later write got %v, want the failure again", err)
	}
	if _, err := s.Deliver(bg, "r", journal.Message{Kind: journal.MessageSignal, Name: "x"}, nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Deliver after the failure: %v", err)
	}
	if err := s.PutKV(bg, "k", []byte("v"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("PutKV after the failure: %v", err)
	}
	// Reads still work.
	if _, err := s.Records(bg, "r", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close = %v, want the failure", err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	recs, err := s.Records(bg, "r", 1)
	if err != nil || (len(recs) != 3 && len(recs) != 4) {
		t.Fatalf("after reopening: %d records, %v", len(recs), err)
	}
	next := uint64(len(recs) + 1)
	if err := s.Append(bg, "r", []journal.Record{mkrec(t, next, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatalf("the run does not go on after reopening: %v", err)
	}
}

// The background syncer's failure fails the store too (it was dropped, and
// dirty was cleared before the sync, so nothing tried again).
func TestFailedBackgroundSyncFailsTheStore(t *testing.T) {
	dir := t.TempDir()
	rec := &syncRecorder{failed: make(chan struct{}, 1)}
	s, err := Open(dir, Options{fsync: rec.fsync, SyncInterval: 5e6})
	if err != nil {
		t.Fatal(err)
	}
	writeRun(t, s, "b", 1)
	rec.setFail(walFile)
	if err := s.Append(bg, "b", []journal.Record{mkrec(t, 3, journal.TypeLog, journal.Log{})}, nil, false); err != nil {
		t.Fatal(err)
	}
	<-rec.failed // the background sync of record 3 failed
	rec.setFail("")
	// The committer runs the background sync: it records the failure
	// before it takes the next write.
	err = s.Append(bg, "b", []journal.Record{mkrec(t, 4, journal.TypeLog, journal.Log{})}, nil, true)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("writes after a failed background sync: %v", err)
	}
	if err := s.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close = %v", err)
	}
}
