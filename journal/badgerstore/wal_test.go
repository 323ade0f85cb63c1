package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
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

// writeRun2 appends record seq to run id, with metadata.
func writeRun2(t *testing.T, s *Store, id string, seq uint64) {
	t.Helper()
	rec, _ := journal.NewRecord(seq, journal.TypeLog, time.Now(), journal.Log{Message: fmt.Sprint(seq)})
	if err := s.Append(context.Background(), id, []journal.Record{rec}, &journal.Run{ID: id, Status: journal.StatusWaiting}, true); err != nil {
		t.Fatal(err)
	}
}

// Acknowledged durable writes survive even if Badger lost everything it had
// not synced: the log alone restores them. (Here Badger's files are those
// of a new store: the log is copied into it.)
func TestLogRestoresAcknowledgedWrites(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	mustOpen(t, dir2).Close()
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
	mustOpen(t, dir2).Close()
	s, _ := Open(dir1, Options{})
	writeRun(t, s, "t", 9)
	off := s.wal.off
	writeRun2(t, s, "t", 11)
	copyFile(t, filepath.Join(dir1, walFile), filepath.Join(dir2, walFile))
	s.Close()
	// Tear the last record: flip a byte in its payload.
	f, _ := os.OpenFile(filepath.Join(dir2, walFile), os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, off+walRecHeader+3)
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

// After a checkpoint, records of earlier generations are never replayed:
// they are still in the file, after the new header, but not read.
func TestLogGenerationsHideStaleRecords(t *testing.T) {
	dir := t.TempDir()
	// No background syncer: the test calls checkpoint itself, which only
	// the committer may do while one runs.
	s, err := Open(dir, Options{SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeRun(t, s, "old", 5)
	data, _ := os.ReadFile(filepath.Join(dir, walFile))
	if _, batches, err := parseWAL(data); err != nil || len(batches) != 6 {
		t.Fatalf("before the checkpoint: %d batches, %v", len(batches), err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(dir, walFile))
	if !bytes.Contains(data, []byte("old")) {
		t.Fatal("the old records are gone from the file: the test proves nothing")
	}
	if _, batches, err := parseWAL(data); err != nil || len(batches) != 0 {
		t.Fatalf("after the checkpoint: %d batches, %v", len(batches), err)
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

// A crash can leave Badger with a batch the log does not hold (Badger's
// commit reached the OS, the log's write did not; or, on power loss, the
// kernel wrote Badger's memtable file back but not the log). Reopening must
// not re-apply older batches over the newer data.
func TestLogNeverReappliesOlderBatches(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	writeRun(t, s, "r", 3) // metadata: waiting
	saved, err := os.ReadFile(filepath.Join(dir, walFile))
	if err != nil {
		t.Fatal(err)
	}
	fin := mkrec(t, 5, journal.TypeRunFinished, journal.RunFinished{Status: journal.StatusCompleted})
	if err := s.Append(bg, "r", []journal.Record{fin}, &journal.Run{ID: "r", Status: journal.StatusCompleted}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Badger holds batch N+1; the log only up to N.
	if err := os.WriteFile(filepath.Join(dir, walFile), saved, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, dir)
	defer s2.Close()
	m, err := s2.Run(bg, "r")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s2.Records(bg, "r", 1)
	if err != nil || len(recs) != 5 || recs[4].Type != journal.TypeRunFinished {
		t.Fatalf("records: %d, %v", len(recs), err)
	}
	if m.Status != journal.StatusCompleted {
		t.Fatalf("metadata went back to %q while the journal ends in %s", m.Status, recs[4].Type)
	}
}

// Damage in the middle of the log, in records that were synced, is not a
// torn tail: Open refuses it, naming the file and the offset, instead of
// silently dropping every later batch.
func TestLogRefusesCorruptionInTheMiddle(t *testing.T) {
	dir1 := t.TempDir()
	s := mustOpen(t, dir1)
	var offs []int64
	r1, _ := journal.NewRecord(1, journal.TypeRunStarted, time.Now(), journal.RunStarted{})
	if err := s.Create(bg, &journal.Run{ID: "m", Status: journal.StatusRunning}, []journal.Record{r1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		offs = append(offs, s.wal.off)
		rec, _ := journal.NewRecord(uint64(i+2), journal.TypeLog, time.Now(), journal.Log{Message: fmt.Sprint(i)})
		if err := s.Append(bg, "m", []journal.Record{rec}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh Badger (it lost everything it had not synced) with the log.
	dir2 := t.TempDir()
	s3 := mustOpen(t, dir2)
	s3.Close()
	copyFile(t, filepath.Join(dir1, walFile), filepath.Join(dir2, walFile))
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir2, walFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := offs[4] + 40 // inside the 5th append's record
	f.WriteAt([]byte{0x5a}, bad)
	f.Close()
	s2, err := Open(dir2, Options{})
	if err == nil {
		recs, _ := s2.Records(bg, "m", 1)
		s2.Close()
		t.Fatalf("Open accepted a log damaged in the middle (%d of 11 records recovered)", len(recs))
	}
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), walFile) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("error does not say what is corrupt where: %v", err)
	}
}

// writeV1 writes batches in the version 1 log format (no header, no
// LSNs): length | generation | CRC-32C(payload) | payload.
func writeV1(t *testing.T, path string, gen uint32, batches [][]kv) {
	t.Helper()
	var b []byte
	for _, sets := range batches {
		var p []byte
		for _, e := range sets {
			p = append(p, walEntrySet)
			p = binary.AppendUvarint(p, uint64(len(e.k)))
			p = append(p, e.k...)
			p = binary.AppendUvarint(p, uint64(len(e.v)))
			p = append(p, e.v...)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = binary.BigEndian.AppendUint32(b, gen)
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, castagnoli))
		b = append(b, p...)
	}
	b = append(b, make([]byte, 1<<20-len(b))...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A store written by a starflow with the version 1 log opens: the batches
// its log holds are applied, and the log is rewritten in version 2.
func TestLogVersion1IsUpgraded(t *testing.T) {
	dir := t.TempDir()
	mustOpen(t, dir).Close()
	m, _ := json.Marshal(journal.Run{ID: "v1", Status: journal.StatusWaiting})
	writeV1(t, filepath.Join(dir, walFile), 7, [][]kv{
		{{k: journalKey("v1", 1), v: journal.Encode(started(t))}, {k: metaKey("v1"), v: m}},
		{{k: journalKey("v1", 2), v: journal.Encode(mkrec(t, 2, journal.TypeLog, journal.Log{Message: "from v1"}))}},
	})
	s := mustOpen(t, dir)
	recs, err := s.Records(bg, "v1", 1)
	if err != nil || len(recs) != 2 {
		t.Fatalf("Records: %d, %v", len(recs), err)
	}
	r, err := s.Run(bg, "v1") // legacy plain-JSON metadata
	if err != nil || r.Status != journal.StatusWaiting {
		t.Fatalf("Run: %+v, %v", r, err)
	}
	if err := s.Append(bg, "v1", []journal.Record{mkrec(t, 3, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, walFile))
	st, batches, err := parseWAL(data)
	if err != nil || st.legacy || st.gen != 8 || len(batches) != 1 {
		t.Fatalf("log after the upgrade: %+v, %d batches, %v", st, len(batches), err)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if recs, err := s.Records(bg, "v1", 1); err != nil || len(recs) != 3 {
		t.Fatalf("after reopening: %d, %v", len(recs), err)
	}
}

// Damage in the synced part of the log is refused; a torn tail is not:
// the log's own reader, on the bytes.
func TestLogDamageOrTornTail(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	var offs []int64
	writeRun(t, s, "d", 0)
	for i := uint64(2); i <= 6; i++ {
		offs = append(offs, s.wal.off)
		writeRun2(t, s, "d", i)
	}
	// A non-durable tail: record 7 is written but never synced.
	offs = append(offs, s.wal.off)
	if err := s.Append(bg, "d", []journal.Record{mkrec(t, 7, journal.TypeLog, journal.Log{})}, nil, false); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, walFile))
	s.Close()
	flip := func(off int64) []byte {
		d := append([]byte(nil), data...)
		d[off] ^= 0x10
		return d
	}
	// Intact: all 7 batches (create and 6 appends).
	if _, b, err := parseWAL(data); err != nil || len(b) != 7 {
		t.Fatalf("intact: %d, %v", len(b), err)
	}
	// The last record, never synced: a torn tail, the rest is kept.
	if _, b, err := parseWAL(flip(offs[5] + walRecHeader + 5)); err != nil || len(b) != 6 {
		t.Fatalf("torn tail: %d, %v", len(b), err)
	}
	// The record before it was synced (record 7 says so): damage.
	_, _, err := parseWAL(flip(offs[4] + 2))
	var d *walDamage
	if !errors.As(err, &d) || d.off != offs[4] || !strings.Contains(err.Error(), "synced") {
		t.Fatalf("damage: %v", err)
	}
}
