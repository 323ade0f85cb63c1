package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 10 #3: a run that exhausts its memory fails with a limit error and
// exit code 7 (not the Go runtime's fatal "out of memory", which exited 2,
// the code for bad usage).
func TestMemoryLimitExitCode(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hoard.star")
	os.WriteFile(script, []byte("def main(input):\n    hoard = []\n    for i in range(100000):\n        hoard.append('x' * (1 << 20) + str(i))\n    return len(hoard)\n"), 0o644)
	code, _, stderr := runCLI(t, dir, "run", script, "--id", "m1", "--max-memory", "16MiB")
	if code != ExitLimit || !strings.Contains(stderr, "memory limit") || !strings.Contains(stderr, "16.0 MiB") || !strings.Contains(stderr, "hoard.star:4:") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	// Steps are limits too.
	spin := filepath.Join(dir, "spin.star")
	os.WriteFile(spin, []byte("def main(input):\n    n = 0\n    for i in range(100000000):\n        n += i\n    return n\n"), 0o644)
	if code, _, stderr := runCLI(t, dir, "run", spin, "--id", "s1", "--max-steps", "10000"); code != ExitLimit || !strings.Contains(stderr, "10000 execution steps") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, dir, "run", spin, "--id", "s2", "--max-memory", "lots"); code != ExitUsage || !strings.Contains(stderr, "not an amount of memory") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}
