package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/server"
)

// startServe runs `starflow serve` as a real child process (this test
// binary, re-executed) over db, and returns it with an API client.
func startServe(t *testing.T, db, bumps string) (*exec.Cmd, *server.Client) {
	t.Helper()
	os.Remove(filepath.Join(db, badgerstore.OwnerFile))
	cmd := exec.Command(os.Args[0], "serve", "--addr", "127.0.0.1:0", "--db", db, "--max-wait", "50ms", "--concurrency", "8", "--log-format", "json", "--log-level", "warn", "--allow-inline-source")
	cmd.Env = append(os.Environ(), "STARFLOW_TEST_MAIN=1", "BUMP_FILE="+bumps)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if o, err := badgerstore.ReadOwner(db); err == nil && o.PID == cmd.Process.Pid && o.Addr != "" {
			return cmd, server.NewClient(o.Addr, "")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("serve did not start")
	return nil, nil
}

func countStatus(t *testing.T, cl *server.Client, st journal.Status) int {
	runs, err := cl.List(context.Background(), []journal.Status{st}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

func waitCount(t *testing.T, cl *server.Client, st journal.Status, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for countStatus(t, cl, st) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d runs %s after %s, want %d", countStatus(t, cl, st), st, within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serve is killed with SIGKILL while 200 runs wait for answers and 50
// sleep; after a restart every answer and timer lands and every run
// completes, each side effect exactly once.
func TestServeSurvivesSIGKILL(t *testing.T) {
	crashMatrix(t)
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	db, bumps := filepath.Join(dir, "db"), filepath.Join(dir, "bumps.txt")
	cmd, cl := startServe(t, db, bumps)

	ask := "def main(input):\n    bump('before', input)\n    v = ask_human('ok?', choices = ['yes', 'no'])\n    bump('after', input)\n    return v\n"
	nap := "def main(input):\n    bump('before', input)\n    sleep(3)\n    bump('after', input)\n    return 'slept'\n"
	for i := 0; i < 250; i++ {
		id, src := fmt.Sprintf("ask-%03d", i), ask
		if i >= 200 {
			id, src = fmt.Sprintf("nap-%03d", i), nap
		}
		if _, err := cl.Start(ctx, server.StartRequest{ID: id, Source: src, Input: json.RawMessage(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, cl, journal.StatusWaiting, 250, 60*time.Second)

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	_, cl = startServe(t, db, bumps)
	for i := 0; i < 200; i++ {
		r, err := cl.Answer(ctx, fmt.Sprintf("ask-%03d", i), json.RawMessage(`"yes"`), "test")
		if err != nil || !r.Woke {
			t.Fatalf("answer %d: %+v %v", i, r, err)
		}
	}
	waitCount(t, cl, journal.StatusCompleted, 250, 60*time.Second)

	// Every call ran exactly once: one "before" (step 1) and one "after"
	// (step 3) per run.
	f, err := os.Open(bumps)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, _, _ := strings.Cut(sc.Text(), " ")
		seen[key]++
	}
	if len(seen) != 500 {
		t.Fatalf("%d distinct side effects, want 500", len(seen))
	}
	for key, n := range seen {
		if n != 1 {
			t.Fatalf("%s ran %d times", key, n)
		}
	}
	r, err := cl.Get(ctx, "ask-007")
	if err != nil || string(r.Result) != `"yes"` {
		t.Fatalf("ask-007: %+v %v", r, err)
	}
}
