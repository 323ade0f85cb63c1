package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// run executes the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string {
		if k == "STARFLOW_DB" {
			return filepath.Join(dir, ".starflow")
		}
		return ""
	}}
	code := m.Run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

// A record damaged on disk is detected by its checksum: resume refuses to
// replay it (exit 6) and says which record of which run.
func TestCorruptRecordIsReported(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "wf.star")
	os.WriteFile(script, []byte("def main(input):\n    now()\n    sleep('1h')\n"), 0o644)
	if code, _, stderr := runCLI(t, dir, "run", script, "--id", "c1"); code != ExitWaiting {
		t.Fatalf("run exit %d: %s", code, stderr)
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, ".starflow")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte("j/c1/"), make([]byte, 8)...)
	binary.BigEndian.PutUint64(key[len(key)-8:], 3) // the completion of now()
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		v[len(v)-4] ^= 0x01
		return txn.Set(key, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, dir, "resume", "c1")
	if code != ExitStore || !strings.Contains(stderr, "journal record 3 of run c1 is corrupt: checksum mismatch") {
		t.Fatalf("resume exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, dir, "history", "c1")
	if code != ExitStore || !strings.Contains(stderr, "checksum mismatch") {
		t.Fatalf("history exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, dir, "show", "c1")
	if code != ExitStore || !strings.Contains(stderr, "journal record 3 of run c1") {
		t.Fatalf("show exit %d: %s", code, stderr)
	}
}

// One damaged run does not hide the others: list shows them, names the
// damaged one on stderr, and exits 6.
func TestListShowsTheRunsItCanRead(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "wf.star")
	os.WriteFile(script, []byte("def main(input):\n    return now() != None\n"), 0o644)
	for _, id := range []string{"a1", "a2", "a3"} {
		if code, _, stderr := runCLI(t, dir, "run", script, "--id", id); code != ExitOK {
			t.Fatalf("run %s exit %d: %s", id, code, stderr)
		}
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, ".starflow")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("m/a2"))
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		v[len(v)-3] ^= 0x20 // inside the metadata's JSON: the checksum no longer matches
		return txn.Set([]byte("m/a2"), v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, dir, "list")
	if code != ExitStore || !strings.Contains(stdout, "a1") || !strings.Contains(stdout, "a3") || strings.Contains(stdout, "a2") || !strings.Contains(stderr, "a2") {
		t.Fatalf("list exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
