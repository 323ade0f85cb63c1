package badgerstore

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/starflow/starflow/journal"
)

// rewrite changes a stored value underneath the store, as a bad disk or a
// buggy tool would.
func rewrite(t *testing.T, s *Store, key []byte, f func(v []byte) []byte) {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		return txn.Set(key, f(v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A flipped byte in a run's metadata is detected, not read as a different
// value (it was plain JSON: a flip in the script hash gave U+FFFD).
func TestMetadataIsChecksummed(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	if err := s.Create(bg, meta("m1", journal.StatusRunning), []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(bg, meta("m2", journal.StatusRunning), []journal.Record{started(t)}); err != nil {
		t.Fatal(err)
	}
	rewrite(t, s, metaKey("m1"), func(v []byte) []byte {
		i := strings.Index(string(v), "sha256:abc")
		v[i+8] ^= 0x80
		return v
	})
	_, err := s.Run(bg, "m1")
	var ce *journal.CorruptError
	if !errors.As(err, &ce) || ce.RunID != "m1" {
		t.Fatalf("Run(m1) err = %v, want a CorruptError naming m1", err)
	}
	// List returns the healthy run and names the damaged one.
	runs, err := s.List(bg, journal.Filter{})
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "m1") {
		t.Fatalf("List err = %v, want corruption naming m1", err)
	}
	if len(runs) != 1 || runs[0].ID != "m2" {
		t.Fatalf("List returned %v, want [m2]", ids(runs))
	}
}

func ids(rs []*journal.Run) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// A run whose journal does not start with a valid run.started record is
// corrupt, and Run and List say so (not only Records).
func TestRunWithoutRunStartedIsCorrupt(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for _, id := range []string{"gone", "wrong", "ok"} {
		if err := s.Create(bg, meta(id, journal.StatusRunning), []journal.Record{started(t)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(journalKey("gone", 1)) }); err != nil {
		t.Fatal(err)
	}
	rewrite(t, s, journalKey("wrong", 1), func([]byte) []byte {
		return journal.Encode(mkrec(t, 1, journal.TypeLog, journal.Log{Message: "not a start"}))
	})
	for _, id := range []string{"gone", "wrong"} {
		_, err := s.Run(bg, id)
		var ce *journal.CorruptError
		if !errors.As(err, &ce) || ce.RunID != id {
			t.Errorf("Run(%s) err = %v, want a CorruptError naming it", id, err)
		}
	}
	runs, err := s.List(bg, journal.Filter{})
	if err == nil || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "wrong") {
		t.Errorf("List err = %v, want one naming gone and wrong", err)
	}
	if len(runs) != 1 || runs[0].ID != "ok" {
		t.Errorf("List = %v, want [ok]", ids(runs))
	}
}

// Single-byte flips in the .sst files of a closed store: opening and reading
// back everything either fails with an error or gives exactly the original
// content. Never a panic, never a silently different answer. A seeded,
// fixed budget of flips keeps it fast and repeatable.
func TestSSTFlipSweep(t *testing.T) {
	if raceDetector {
		t.Skip("a damage matrix: .ci/run runs it without -race in its own step")
	}
	tmpl := t.TempDir()
	s := mustOpen(t, tmpl)
	runIDs, blobs := fixture(t, s, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ref := copyDir(t, tmpl)
	s = mustOpen(t, ref)
	want, err := dump(s, runIDs, blobs)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	ssts := filesWith(t, tmpl, ".sst")
	if len(ssts) == 0 {
		t.Fatal("no .sst files")
	}
	rng := rand.New(rand.NewSource(9))
	budget := 48
	if testing.Short() {
		budget = 12
	}
	var errs, same int
	for i := 0; i < budget; i++ {
		name := ssts[rng.Intn(len(ssts))]
		st, _ := os.Stat(filepath.Join(tmpl, name))
		off := rng.Int63n(st.Size())
		x := byte(rng.Intn(255) + 1)
		got, err := openAndDump(t, tmpl, name, off, x, false, runIDs, blobs)
		switch {
		case err != nil:
			errs++
		case got == want:
			same++
		default:
			t.Errorf("%s: byte %d ^ %#x: opened and read back different content without an error:\n%s", name, off, x, diff(want, got))
		}
	}
	t.Logf("%d flips: %d errors, %d identical", budget, errs, same)
}

// openAndDump copies the template store, damages one file (xor one byte
// with x, or truncate it at off), opens it and reads everything back. A
// panic fails the test.
func openAndDump(t *testing.T, tmpl, name string, off int64, x byte, truncate bool, runIDs, blobs []string) (out string, err error) {
	t.Helper()
	dir := copyDir(t, tmpl)
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if truncate {
		f.Truncate(off)
	} else {
		var b [1]byte
		f.ReadAt(b[:], off)
		b[0] ^= x
		f.WriteAt(b[:], off)
	}
	f.Close()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: byte %d ^ %#x (truncate %v): panic: %v", name, off, x, truncate, r)
		}
	}()
	s, err := Open(dir, Options{})
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("empty error")
		}
		return "", err
	}
	defer s.Close()
	out, err = dump(s, runIDs, blobs)
	if errors.Is(err, journal.ErrNotFound) {
		// A run or blob that vanished is not a clear error.
		return "vanished: " + err.Error(), nil
	}
	return out, err
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "- %s\n+ %s\n", a, c)
		}
	}
	return b.String()
}
