package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/server"
)

// runWith executes the CLI in-process with stdin and extra globals.
func runWith(t *testing.T, dir string, stdin io.Reader, globals starlark.StringDict, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdin: stdin, Stdout: &stdout, Stderr: &stderr, Globals: globals, Getenv: func(k string) string {
		if k == "STARFLOW_DB" {
			return filepath.Join(dir, ".starflow")
		}
		return ""
	}}
	code := m.Run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

// Input that is not UTF-8 is a usage error naming the byte's offset; it
// used to reach the script with U+FFFD in its place.
func TestInputMustBeUTF8(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "echo.star")
	os.WriteFile(script, []byte("def main(input):\n    return input\n"), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{\"name\": \"caf\xe9\"}"), 0o644)
	for _, in := range []string{"@" + bad, "{\"name\": \"caf\xe9\"}", "@-"} {
		code, stdout, stderr := runWith(t, dir, strings.NewReader("{\"name\": \"caf\xe9\"}"), nil, "run", script, "--input", in)
		if code != ExitUsage || !strings.Contains(stderr, "--input: not valid UTF-8: byte 0xe9 at offset 13") || stdout != "" {
			t.Errorf("--input %.20q: exit %d, %s %s", in, code, stdout, stderr)
		}
	}
	// An escaped lone surrogate is refused by the runtime's JSON reader.
	code, _, stderr := runWith(t, dir, nil, nil, "run", script, "--input", `"\udc00"`)
	if code != ExitUsage || !strings.Contains(stderr, `\udc00 is half of a UTF-16 surrogate pair`) {
		t.Errorf("lone surrogate: exit %d, %s", code, stderr)
	}
	if code, stdout, stderr := runWith(t, dir, nil, nil, "run", script, "--input", `{"name": "café \u00e9 \ud83d\ude00"}`); code != ExitOK || strings.TrimSpace(stdout) != `{"name":"café é 😀"}` {
		t.Errorf("valid input: exit %d, %s %s", code, stdout, stderr)
	}
}

// An input over the limit is a usage error at once: a file by its size
// without reading it, stdin after reading just past the limit.
func TestOversizedInputIsRefusedUpFront(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "echo.star")
	os.WriteFile(script, []byte("def main(input):\n    return len(input)\n"), 0o644)
	huge := filepath.Join(dir, "huge.json")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(200 << 20) // sparse: 200 MB that would take long to read
	f.Close()
	code, _, stderr := runWith(t, dir, nil, nil, "run", script, "--input", "@"+huge)
	want := fmt.Sprintf("--input: the input is %d bytes, over the limit of %d bytes (8 MiB)", 200<<20, server.MaxInputBytes)
	if code != ExitUsage || !strings.Contains(stderr, want) {
		t.Fatalf("200 MB file: exit %d, %s", code, stderr)
	}
	stdin := &countingReader{}
	code, _, stderr = runWith(t, dir, stdin, nil, "run", script, "--input", "@-")
	if code != ExitUsage || !strings.Contains(stderr, "--input: the input is larger than the limit of") || stdin.n > server.MaxInputBytes+64<<10 {
		t.Fatalf("endless stdin: exit %d after reading %d bytes, %s", code, stdin.n, stderr)
	}
	code, _, stderr = runWith(t, dir, nil, nil, "run", script, "--input", `"`+strings.Repeat("x", server.MaxInputBytes)+`"`)
	if code != ExitUsage || !strings.Contains(stderr, "over the limit") {
		t.Fatalf("inline: exit %d, %s", code, stderr)
	}
	// Just under the limit is fine.
	code, stdout, stderr := runWith(t, dir, nil, nil, "run", script, "--input", `"`+strings.Repeat("x", server.MaxInputBytes-2)+`"`)
	if code != ExitOK || strings.TrimSpace(stdout) != fmt.Sprint(server.MaxInputBytes-2) {
		t.Fatalf("at the limit: exit %d, %s", code, stderr)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += len(p)
	return len(p), nil
}

// A result that is not UTF-8 fails the run naming where in the value it
// is; it used to be written with U+FFFD in its place.
func TestResultMustBeUTF8(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "bin.star")
	os.WriteFile(script, []byte("def main(input):\n    return {\"ok\": \"fine\", \"data\": [1, binary]}\n"), 0o644)
	code, stdout, stderr := runWith(t, dir, nil, starlark.StringDict{"binary": starlark.String("ab\xffc")}, "run", script)
	if code != ExitFailed || stdout != "" || !strings.Contains(stderr, `result["data"][1]: the string is not valid UTF-8 (byte 0xff at offset 2 of 4)`) {
		t.Fatalf("exit %d, %q %s", code, stdout, stderr)
	}
}

// A result too large for the journal fails the run with an error that
// says how large it was and shows none of it (the store once refused it
// with Badger's "Value with size ... exceeded ... limit. Value:\n00000000
// 7b 22 ...", which the CLI printed): the CLI never shows journal data in
// an error.
func TestStoreErrorsShowNoData(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "big.star")
	os.WriteFile(script, []byte("def main(input):\n    return 'private-' + 'x' * (65 << 20)\n"), 0o644)
	code, stdout, stderr := runWith(t, dir, nil, nil, "run", script, "--log-level", "error")
	if code == ExitOK || stdout != "" {
		t.Fatalf("exit %d, stdout %.100q", code, stdout)
	}
	if regexp.MustCompile(`(?m)^[0-9a-f]{8}  [0-9a-f]{2} `).MatchString(stderr) || strings.Contains(stderr, "private") || strings.Contains(stderr, "xxxxxxxx") || len(stderr) > 1000 {
		t.Fatalf("the error shows data (%d bytes):\n%.2000s", len(stderr), stderr)
	}
}
