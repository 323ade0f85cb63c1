package badgerstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/starflow/starflow/journal"
)

func bigValue(n int) json.RawMessage {
	b := make([]byte, 0, n+2)
	b = append(b, '"')
	for i := 0; len(b) < n+1; i++ {
		b = append(b, "abcdefghijklmnopqrstuvwxyz0123456789"[i%36])
	}
	return append(b, '"')
}

// A 30 MiB record (over Badger's 16 MiB value limit) is stored and read
// back intact, also after reopening.
func TestLargeRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Create(bg, meta("big", journal.StatusRunning), []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	val := bigValue(30 << 20)
	rec := journal.Record{Seq: 2, Type: journal.TypeCallCompleted, Time: mkrec(t, 2, journal.TypeLog, nil).Time, Data: val}
	small := mkrec(t, 3, journal.TypeLog, journal.Log{Message: "after"})
	if err := s.Append(bg, "big", []journal.Record{rec, small}, meta("big", journal.StatusWaiting), true); err != nil {
		t.Fatalf("Append of a 30 MiB record: %v", err)
	}
	check := func(s *Store) {
		t.Helper()
		recs, err := s.Records(bg, "big", 1)
		if err != nil || len(recs) != 3 {
			t.Fatalf("Records: %d, %v", len(recs), err)
		}
		if !bytes.Equal(recs[1].Data, val) || recs[2].Type != journal.TypeLog {
			t.Fatalf("record 2 is %d bytes, want %d", len(recs[1].Data), len(val))
		}
	}
	check(s)
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	check(s)
}

// Larger than journal.MaxRecordBytes: refused with ErrTooLarge naming the
// run, the record and the size; Badger's message (with its hexdump of the
// value) never reaches the caller.
func TestTooLargeIsRefused(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	if err := s.Create(bg, meta("huge", journal.StatusRunning), []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte{'7'}, journal.MaxRecordBytes+1)
	err := s.Append(bg, "huge", []journal.Record{{Seq: 2, Type: journal.TypeCallCompleted, Data: val}}, nil, true)
	if !errors.Is(err, journal.ErrTooLarge) || !strings.Contains(err.Error(), "huge") || !strings.Contains(err.Error(), "record 2") {
		t.Fatalf("err = %.300v, want ErrTooLarge naming run huge and record 2", err)
	}
	if len(err.Error()) > 400 || strings.Contains(err.Error(), "7777") {
		t.Fatalf("the error carries the value: %.300s", err)
	}
	if _, err := s.Deliver(bg, "huge", journal.Message{Kind: journal.MessageAnswer, Value: val}, nil); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("Deliver: %.300v", err)
	}
	if _, err := s.PutBlob(bg, val); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("PutBlob: %.300v", err)
	}
	// The run is intact and appendable.
	if err := s.Append(bg, "huge", []journal.Record{mkrec(t, 2, journal.TypeLog, journal.Log{})}, nil, true); err != nil {
		t.Fatal(err)
	}
}

// Chunked values are verified when read: a damaged or missing chunk is
// reported as corruption of that record, never returned.
func TestChunkedValuesAreVerified(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	if err := s.Create(bg, meta("ch", journal.StatusRunning), []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	rec := journal.Record{Seq: 2, Type: journal.TypeCallCompleted, Data: bigValue(3 << 20)}
	if err := s.Append(bg, "ch", []journal.Record{rec}, nil, true); err != nil {
		t.Fatal(err)
	}
	key := journalKey("ch", 2)
	var lsn uint64
	var nChunks uint32
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		if item.UserMeta()&userMetaChunked == 0 {
			t.Fatal("a 3 MiB record is not chunked")
		}
		ref, _ := item.ValueCopy(nil)
		r, err := parseRef(ref)
		lsn, nChunks = r.lsn, r.n
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the second chunk.
	rewrite(t, s, chunkKey(key, lsn, 1), func(v []byte) []byte { v[1000] ^= 1; return v })
	_, err = s.Records(bg, "ch", 1)
	var ce *journal.CorruptError
	if !errors.As(err, &ce) || ce.RunID != "ch" || ce.Seq != 2 || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Records with a damaged chunk: %v", err)
	}
	// Lose the third chunk.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(key, lsn, 2)) }); err != nil {
		t.Fatal(err)
	}
	if _, err = s.Records(bg, "ch", 2); !errors.As(err, &ce) || !strings.Contains(err.Error(), fmt.Sprintf("chunk 3 of %d is missing", nChunks)) {
		t.Fatalf("Records with a missing chunk: %v", err)
	}
}

// Inbox messages, blobs and run metadata over the threshold are chunked
// too; replacing chunked metadata deletes the old chunks.
func TestLargeMessagesBlobsAndMetadata(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	big := bigValue(2 << 20)
	m := meta("lm", journal.StatusRunning)
	m.Progress = big
	if err := s.Create(bg, m, []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(bg, "lm", journal.Message{Kind: journal.MessageAnswer, Value: big}, nil); err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("def main(input):\n    pass\n"), 100000)
	h, err := s.PutBlob(bg, blob)
	if err != nil {
		t.Fatal(err)
	}
	m.Progress = bigValue(3 << 20)
	m.Status = journal.StatusWaiting
	if err := s.Append(bg, "lm", nil, m, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	got, err := s.Run(bg, "lm")
	if err != nil || got.Status != journal.StatusWaiting || !bytes.Equal(got.Progress, m.Progress) {
		t.Fatalf("Run: %v (%d bytes of progress)", err, len(got.Progress))
	}
	msgs, err := s.Inbox(bg, "lm", 1)
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Value, big) {
		t.Fatalf("Inbox: %d, %v", len(msgs), err)
	}
	if b, err := s.Blob(bg, h); err != nil || !bytes.Equal(b, blob) {
		t.Fatalf("Blob: %d bytes, %v", len(b), err)
	}
	// Chunks in the store: the message's, the blob's and the second
	// metadata's; the first metadata's are gone.
	chunks := func(n int) int { return (n + s.chunkSize - 1) / s.chunkSize }
	msgs0, _ := s.Inbox(bg, "lm", 1)
	want := chunks(len(journal.Encode(journal.Record{Data: mustJSON(t, msgs0[0])}))) + chunks(len(blob)) + chunks(len(metaValue(0, mustEncodeRun(t, got))))
	n := 0
	s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("c/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if n != want {
		t.Fatalf("%d chunks in the store, want %d", n, want)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEncodeRun(t *testing.T, r *journal.Run) []byte {
	t.Helper()
	b, err := journal.EncodeRun(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
