package badgerstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starflow/starflow/journal"
)

// A store whose MANIFEST is missing still has its data files; Badger would
// open it as empty and delete them. Open refuses it and deletes nothing.
func TestMissingManifestIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	fixture(t, s, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := filesWith(t, dir, ".sst", ".vlog", ".mem", walFile)
	if len(filesWith(t, dir, ".sst")) == 0 {
		t.Fatal("fixture left no .sst file")
	}
	if err := os.Remove(filepath.Join(dir, "MANIFEST")); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err == nil {
		runs, _ := s2.List(bg, journal.Filter{})
		s2.Close()
		t.Fatalf("Open accepted a store without its MANIFEST (%d runs listed)", len(runs))
	}
	if !errors.Is(err, journal.ErrCorrupt) || !strings.Contains(err.Error(), "MANIFEST") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error does not name the store and the missing MANIFEST: %v", err)
	}
	after := filesWith(t, dir, ".sst", ".vlog", ".mem", walFile)
	if strings.Join(before, " ") != strings.Join(after, " ") {
		t.Fatalf("files changed: before %v, after %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err == nil {
		t.Fatal("Open created a new MANIFEST")
	}
}

// A kill can leave a zero-length .mem or .vlog file behind (created, never
// written). They hold nothing; Open removes them instead of failing.
func TestZeroLengthFilesAreRemoved(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	ids, blobs := fixture(t, s, 0)
	want, err := dump(s, ids, blobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"00009.mem", "000009.vlog"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("Open with an empty %s: %v", name, err)
		}
		got, err := dump(s2, ids, blobs)
		if err != nil || got != want {
			t.Fatalf("after removing %s: %v\n%s", name, err, got)
		}
		s2.Close()
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s still there: %v", name, err)
		}
	}
}
