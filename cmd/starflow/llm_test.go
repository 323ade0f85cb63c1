package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm/llmtest"
)

// llmWaitSetup is a loopback OpenAI server that answers the first request
// of every call with a 429 asking for an hour's wait, and a script and
// configuration that use it.
func llmWaitSetup(t *testing.T) (dir string, srv *llmtest.Server) {
	srv = llmtest.New(t, llmtest.OpenAI, "p", "")
	var mu sync.Mutex
	seen := map[string]bool{}
	srv.Handle(func(r *llmtest.Request) llmtest.Reply {
		mu.Lock()
		defer mu.Unlock()
		if !seen[r.IdempotencyKey] {
			seen[r.IdempotencyKey] = true
			return llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: time.Hour}
		}
		return llmtest.Reply{}
	})
	dir = t.TempDir()
	files := map[string]string{
		"wf.star": "def main(input):\n    return llm(\"hello\").text\n",
		"llm.yaml": fmt.Sprintf(`
providers:
  p: {type: openai, base_url: %s, api_key: env(OPENAI_API_KEY)}
models:
  default:
    deadline: 2h
    retry: {initial: 10ms, jitter: 0}
    deployments:
      - {provider: p, model: m}
`, srv.URL()),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, srv
}

// starflow runs the command in dir. A command that does not finish within
// a minute (it waited out the hour in process) fails the test.
func starflow(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STARFLOW_TEST_MAIN=1", "OPENAI_API_KEY=sk-test-key-for-loopback", "STARFLOW_DB="+filepath.Join(dir, ".starflow"), "STARFLOW_LLM_CONFIG=llm.yaml")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("starflow %s did not finish in a minute (did llm wait in process?)\n%s", strings.Join(args, " "), errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// An hour's rate-limit wait suspends the run: starflow run exits as
// waiting, starflow show says what the call waits for and until when.
func TestLLMRateLimitWaitSuspendsTheRun(t *testing.T) {
	dir, srv := llmWaitSetup(t)
	_, stderr, code := starflow(t, dir, "run", "wf.star", "--id", "w1")
	if code != ExitWaiting || !strings.Contains(stderr, "run w1 is waiting at wf.star:2:15 in llm") {
		t.Fatalf("exit %d, want %d (waiting)\n%s", code, ExitWaiting, stderr)
	}
	if srv.Calls() != 1 {
		t.Fatalf("%d requests before the wait", srv.Calls())
	}
	stdout, stderr, code := starflow(t, dir, "show", "w1")
	if code != ExitOK {
		t.Fatalf("show: exit %d\n%s", code, stderr)
	}
	for _, re := range []string{`status +waiting`, `waiting +retry llm: attempt 1 failed \(rate_limit\), attempt 2 at \S+ in llm at wf.star:2:15`, `due +\d{4}-`} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Fatalf("show does not match %q:\n%s", re, stdout)
		}
	}
}

// starflow test skips waits by moving the runtime's clock; the llm
// module's cooldowns are on that clock, so the hour passes at once and
// every crash scenario completes.
func TestStarflowTestSkipsLLMWaits(t *testing.T) {
	dir, srv := llmWaitSetup(t)
	stdout, stderr, code := starflow(t, dir, "test", "wf.star")
	if code != ExitOK || !strings.Contains(stdout, " 0 failed") || !strings.Contains(stdout, "reference") {
		t.Fatalf("starflow test: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if srv.Calls() < 2 {
		t.Fatalf("%d requests", srv.Calls())
	}
}
