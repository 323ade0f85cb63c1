package badgerstore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/starflow/starflow/journal"
)

// Below the free-space reserve, writes fail with ErrNoSpace saying how
// much is free and what to do; reads keep working; writes resume when
// space returns, and the run goes on where it was.
func TestNoSpaceRefusesWrites(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 40)
	statfs := func(string) (uint64, error) { return free.Load(), nil }
	dir := t.TempDir()
	s, err := Open(dir, Options{MinFreeBytes: 64 << 20, freeSpace: statfs, spaceTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeRun(t, s, "n", 2)
	free.Store(10 << 20)
	err = s.Append(bg, "n", []journal.Record{mkrec(t, 4, journal.TypeLog, journal.Log{})}, nil, true)
	if !errors.Is(err, journal.ErrNoSpace) || !strings.Contains(err.Error(), "10 MiB free") || !strings.Contains(err.Error(), "64 MiB") || !strings.Contains(err.Error(), "run n") {
		t.Fatalf("append below the reserve: %v", err)
	}
	if _, err := s.Deliver(bg, "n", journal.Message{Kind: journal.MessageSignal, Name: "x"}, nil); !errors.Is(err, journal.ErrNoSpace) {
		t.Fatalf("Deliver: %v", err)
	}
	if _, err := s.PutBlob(bg, []byte("new script")); !errors.Is(err, journal.ErrNoSpace) {
		t.Fatalf("PutBlob: %v", err)
	}
	if err := s.PutKV(bg, "llm/x", []byte("v"), 0); !errors.Is(err, journal.ErrNoSpace) {
		t.Fatalf("PutKV: %v", err)
	}
	if recs, err := s.Records(bg, "n", 1); err != nil || len(recs) != 3 {
		t.Fatalf("reads below the reserve: %d, %v", len(recs), err)
	}
	// Space returns: the next write goes through, at the right place.
	free.Store(1 << 40)
	if err := s.Append(bg, "n", []journal.Record{mkrec(t, 4, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
}

// The cached answer is asked again often enough: writes that would eat
// into the reserve are refused even between two checks.
func TestNoSpaceCacheDoesNotOvershoot(t *testing.T) {
	var free atomic.Uint64
	var calls atomic.Int64
	free.Store(100 << 20)
	statfs := func(string) (uint64, error) { calls.Add(1); return free.Load(), nil }
	s, err := Open(t.TempDir(), Options{MinFreeBytes: 64 << 20, freeSpace: statfs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Create(bg, meta("c", journal.StatusRunning), []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	val := bigValue(512 << 10)
	var refused bool
	for seq := uint64(2); seq < 200 && !refused; seq++ {
		err := s.Append(bg, "c", []journal.Record{{Seq: seq, Type: journal.TypeLog, Data: val}}, nil, false)
		if errors.Is(err, journal.ErrNoSpace) {
			refused = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		free.Store(free.Load() - 3*uint64(len(val))) // what the write cost
		if free.Load() < 64<<20 {
			t.Fatalf("write %d was accepted into the reserve (%d bytes free)", seq, free.Load())
		}
	}
	if !refused {
		t.Fatal("never refused")
	}
	if n := calls.Load(); n > 60 {
		t.Fatalf("%d statfs calls: not cached", n)
	}
}

// A real small file system filling up (tmpfs, which needs root).
func TestNoSpaceOnARealFileSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=96m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "db")
	s, err := Open(dir, Options{MinFreeBytes: 24 << 20, spaceTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	writeRun(t, s, "t", 3)
	// Fill the file system to 8 MiB free.
	filler := filepath.Join(mnt, "filler")
	free, _ := freeBytes(mnt)
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M", "count="+strconv.Itoa(int(free>>20)-8)).CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, out)
	}
	err = s.Append(bg, "t", []journal.Record{mkrec(t, 5, journal.TypeLog, journal.Log{Message: "full"})}, nil, true)
	if !errors.Is(err, journal.ErrNoSpace) {
		t.Fatalf("append on a full disk: %v", err)
	}
	t.Log(err)
	if recs, err := s.Records(bg, "t", 1); err != nil || len(recs) != 4 {
		t.Fatalf("reads on a full disk: %d, %v", len(recs), err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(bg, "t", []journal.Record{mkrec(t, 5, journal.TypeLog, journal.Log{Message: "room again"})}, nil, true); err != nil {
		t.Fatalf("append after freeing space: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if recs, err := s.Records(bg, "t", 1); err != nil || len(recs) != 5 {
		t.Fatalf("after reopening: %d, %v", len(recs), err)
	}
}
