package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/storetest"
)

func TestStore(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 40)
	opts := Options{spaceTTL: -1, freeSpace: func(string) (uint64, error) { return free.Load(), nil }}
	open := func(t *testing.T) (journal.Store, func() journal.Store) {
		free.Store(1 << 40)
		dir := t.TempDir()
		s, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		cur := s
		t.Cleanup(func() { cur.Close() })
		return s, func() journal.Store {
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			n, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			cur = n
			return n
		}
	}
	storetest.RunWith(t, open, storetest.Hooks{
		DamageRun: func(t *testing.T, s journal.Store, id string) {
			rewrite(t, s.(*Store), metaKey(id), func(v []byte) []byte { v[len(v)-2] ^= 0x04; return v })
		},
		DamageRecord: func(t *testing.T, s journal.Store, id string, seq uint64) {
			rewrite(t, s.(*Store), journalKey(id, seq), func(v []byte) []byte { v[len(v)-1] ^= 0x01; return v })
		},
		Full: func(t *testing.T, s journal.Store, full bool) {
			if full {
				free.Store(1 << 20)
			} else {
				free.Store(1 << 40)
			}
		},
	})
}

func TestCorruptRecordIsDetected(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r1, _ := journal.NewRecord(1, journal.TypeRunStarted, time.Now(), journal.RunStarted{Input: json.RawMessage(`{"n":1}`)})
	r2, _ := journal.NewRecord(2, journal.TypeCallCompleted, time.Now(), journal.CallCompleted{Step: "1", Result: json.RawMessage(`"hello"`)})
	if err := s.Create(ctx, &journal.Run{ID: "x", Status: journal.StatusRunning}, []journal.Record{r1, r2}); err != nil {
		t.Fatal(err)
	}
	// Flip one byte of record 2's payload underneath the store, as a bad
	// disk or a buggy tool would.
	key := journalKey("x", 2)
	err = s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		v[len(v)-3] ^= 0x20
		return txn.Set(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Records(ctx, "x", 1)
	var ce *journal.CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("Records err = %v, want a CorruptError", err)
	}
	if ce.Seq != 2 || ce.RunID != "x" || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("error does not name the record: %v", err)
	}
	// A missing record (a hole in the sequence) is corruption too.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		t.Fatal(err)
	}
	r3, _ := journal.NewRecord(3, journal.TypeLog, time.Now(), journal.Log{})
	s.db.Update(func(txn *badger.Txn) error { return txn.Set(journalKey("x", 3), journal.Encode(r3)) })
	_, err = s.Records(ctx, "x", 1)
	if !errors.As(err, &ce) || ce.Seq != 2 || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("hole err = %v", err)
	}
	s.Close()
}

func TestSecondOpenNamesTheOwner(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Command: "starflow run hello.star"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Badger's lock is a flock, which is per open file description: a second
	// Open in this process conflicts exactly as another process would.
	_, err = Open(dir, Options{})
	var le *journal.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Open err = %v, want LockedError", err)
	}
	if le.PID != os.Getpid() || !strings.Contains(err.Error(), "starflow run hello.star") || !strings.Contains(err.Error(), "kill") {
		t.Fatalf("message does not say who holds the store and what to do: %v", err)
	}
}

func TestCloseRemovesOwnerAndIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwner(dir); err != nil {
		t.Fatalf("owner file missing while open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOwner(dir); !os.IsNotExist(err) {
		t.Fatalf("owner file left after Close: %v", err)
	}
	if _, err := s.Run(context.Background(), "x"); err == nil {
		t.Fatal("read after close succeeded")
	}
	if err := s.Append(context.Background(), "x", nil, &journal.Run{ID: "x"}, false); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("append after close err = %v", err)
	}
}

func TestKV(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, ok, err := s.GetKV(ctx, "llm/cache/x"); ok || err != nil {
		t.Fatalf("missing key: %v %v", ok, err)
	}
	if err := s.PutKV(ctx, "llm/cache/x", []byte("answer"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKV(ctx, "llm/cache/short", []byte("gone soon"), time.Second); err != nil {
		t.Fatal(err)
	}
	v, ok, err := s.GetKV(ctx, "llm/cache/x")
	if !ok || err != nil || string(v) != "answer" {
		t.Fatalf("GetKV = %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.GetKV(ctx, "llm/cache/short"); !ok {
		t.Fatal("ttl entry missing before expiry")
	}
	time.Sleep(1100 * time.Millisecond)
	if _, ok, _ := s.GetKV(ctx, "llm/cache/short"); ok {
		t.Fatal("ttl entry still there after expiry")
	}
	// KV keys never show up as runs.
	if runs, _ := s.List(ctx, journal.Filter{}); len(runs) != 0 {
		t.Fatalf("runs: %v", runs)
	}
}
