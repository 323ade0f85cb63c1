package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/journal"
)

var bg = context.Background()

func mustOpen(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mkrec(t testing.TB, seq uint64, typ journal.Type, payload any) journal.Record {
	t.Helper()
	r, err := journal.NewRecord(seq, typ, time.Unix(1700000000, int64(seq)).UTC(), payload)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func started(t testing.TB) journal.Record {
	return mkrec(t, 1, journal.TypeRunStarted, journal.RunStarted{Input: json.RawMessage(`{}`), Durability: journal.DurabilitySync})
}

func meta(id string, st journal.Status) *journal.Run {
	at := time.Unix(1700000000, 0).UTC()
	return &journal.Run{ID: id, Status: st, Script: "wf.star", ScriptHash: "sha256:abc", CreatedAt: at, UpdatedAt: at, Durability: journal.DurabilitySync}
}

// copyDir copies the regular files of dir (not the lock) into a new
// directory.
func copyDir(t testing.TB, from string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		if err := copySparse(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// copySparse copies a file, leaving holes where it has runs of zeros
// (Badger's .mem files are 32 MiB, mostly unwritten).
func copySparse(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	defer dst.Close()
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return dst.Truncate(off)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// filesWith lists the files of dir whose names end in one of exts, sorted.
func filesWith(t testing.TB, dir string, exts ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		for _, x := range exts {
			if strings.HasSuffix(e.Name(), x) {
				out = append(out, e.Name())
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// dump reads back everything the store holds about the given runs and
// blobs, in a canonical text form; any error stops it.
func dump(s *Store, ids, blobs []string) (string, error) {
	var b strings.Builder
	runs, err := s.List(bg, journal.Filter{})
	if err != nil {
		return "", err
	}
	for _, r := range runs {
		mj, _ := json.Marshal(r)
		fmt.Fprintf(&b, "list %s\n", mj)
	}
	for _, id := range ids {
		r, err := s.Run(bg, id)
		if err != nil {
			return "", err
		}
		mj, _ := json.Marshal(r)
		fmt.Fprintf(&b, "run %s\n", mj)
		recs, err := s.Records(bg, id, 1)
		if err != nil {
			return "", err
		}
		for _, rec := range recs {
			sum := sha256.Sum256(rec.Data)
			fmt.Fprintf(&b, "  rec %d %s %d %d %x\n", rec.Seq, rec.Type, rec.Time.UnixNano(), len(rec.Data), sum[:8])
		}
		msgs, err := s.Inbox(bg, id, 1)
		if err != nil {
			return "", err
		}
		for _, m := range msgs {
			mj, _ := json.Marshal(m)
			fmt.Fprintf(&b, "  msg %s\n", mj)
		}
	}
	for _, h := range blobs {
		data, err := s.Blob(bg, h)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "blob %s %d %x\n", h, len(data), sum[:8])
	}
	return b.String(), nil
}

// fixture writes a few runs into s: small records, a large record (big
// bytes: over the chunk size, it is stored in chunks), inbox messages, finished and waiting
// metadata, and a blob. It returns the run IDs and blob hashes.
func fixture(t testing.TB, s *Store, big int) (ids, blobs []string) {
	t.Helper()
	h, err := s.PutBlob(bg, []byte("def main(input):\n    return input\n"))
	if err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, h)
	for i, id := range []string{"alpha", "beta", "gamma"} {
		m := meta(id, journal.StatusRunning)
		m.CreatedAt = m.CreatedAt.Add(time.Duration(i) * time.Second)
		if err := s.Create(bg, m, []journal.Record{started(t)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for seq := uint64(2); seq <= 30; seq++ {
		for _, id := range ids {
			rec := mkrec(t, seq, journal.TypeLog, journal.Log{Level: "info", Message: fmt.Sprintf("%s step %d", id, seq)})
			if err := s.Append(bg, id, []journal.Record{rec}, nil, seq%5 == 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	vlog := mkrec(t, 31, journal.TypeCallCompleted, journal.CallCompleted{Step: "9", Result: json.RawMessage(fmt.Sprintf("%q", strings.Repeat("v", 100<<10)))})
	if err := s.Append(bg, "beta", []journal.Record{vlog}, meta("beta", journal.StatusWaiting), true); err != nil {
		t.Fatal(err)
	}
	if big > 0 {
		rec := mkrec(t, 31, journal.TypeCallCompleted, journal.CallCompleted{Step: "9", Result: json.RawMessage(fmt.Sprintf("%q", bytes.Repeat([]byte("g"), big)))})
		if err := s.Append(bg, "gamma", []journal.Record{rec}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	done := meta("alpha", journal.StatusCompleted)
	done.Result = json.RawMessage(`{"answer":42}`)
	fin := mkrec(t, 31, journal.TypeRunFinished, journal.RunFinished{Status: journal.StatusCompleted, Result: done.Result})
	if err := s.Append(bg, "alpha", []journal.Record{fin}, done, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Deliver(bg, "beta", journal.Message{Kind: journal.MessageSignal, Name: fmt.Sprint("sig", i), Value: json.RawMessage(`"x"`), Time: time.Unix(1700000100, 0).UTC()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return ids, blobs
}
