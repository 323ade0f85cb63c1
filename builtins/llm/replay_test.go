package llm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

const crashChildEnv = "STARFLOW_LLM_CRASH_CHILD"

const crashScript = `
def main(input):
    a = llm("step one")
    b = llm("step two")
    c = llm("step three")
    return [a.text, b.text, c.text]
`

// crashRuntime is the runtime both the child and the parent build over
// the same store and the same provider.
func crashRuntime(store *badgerstore.Store, url string) (*runtime.Runtime, error) {
	cfg, err := llm.ParseConfig("crash.yaml", []byte(fmt.Sprintf(`
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o}
`, url)))
	if err != nil {
		return nil, err
	}
	mod, err := llm.New(llm.Options{Config: cfg, KV: store, Secrets: secrets})
	if err != nil {
		return nil, err
	}
	return runtime.New(store, runtime.Options{Builtins: append(builtins.Standard(), mod.Builtins()...), Globals: builtins.Globals(), Secrets: secrets})
}

// crashChild runs the workflow until the parent kills it.
func crashChild() int {
	store, err := badgerstore.Open(os.Getenv("LLM_CRASH_DIR"), badgerstore.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	rt, err := crashRuntime(store, os.Getenv("LLM_CRASH_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	out, err := rt.Start(bg, runtime.StartRequest{ID: "crash-run", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(crashScript)}})
	fmt.Fprintf(os.Stderr, "child: the run ended before it was killed: %+v %v\n", out, err)
	return 3
}

func TestReplayAfterSIGKILLMakesNoProviderCallForCompletedSteps(t *testing.T) {
	srv := llmtest.New(t, llmtest.OpenAI, "openai", openAIKey)
	reached := make(chan struct{}, 1)
	var killed atomic.Bool
	srv.Handle(func(r *llmtest.Request) llmtest.Reply {
		if strings.Contains(r.LastUser(), "three") && !killed.Load() {
			select {
			case reached <- struct{}{}:
			default:
			}
			return llmtest.Reply{Fault: llmtest.Hang}
		}
		return llmtest.Reply{Text: "answer to " + r.LastUser()}
	})
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", "LLM_CRASH_DIR="+dir, "LLM_CRASH_URL="+srv.URL())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the child never reached step three; output:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed.Store(true)

	count := func(word string) (n int, keys []string) {
		for _, r := range srv.Requests() {
			if strings.Contains(r.LastUser(), word) {
				n++
				keys = append(keys, r.IdempotencyKey)
			}
		}
		return n, keys
	}
	if n, _ := count("three"); n != 1 {
		t.Fatalf("before the resume, step three was requested %d times", n)
	}

	store, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rt, err := crashRuntime(store, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	res, err := rt.Resume(bg, "crash-run")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != journal.StatusCompleted {
		t.Fatalf("status %s, error %+v", res.Status, res.Error)
	}
	var texts []string
	_ = json.Unmarshal(res.Result, &texts)
	if fmt.Sprint(texts) != "[answer to step one answer to step two answer to step three]" {
		t.Fatalf("result %s", res.Result)
	}
	if res.Stats.Replayed != 2 || res.Stats.Executed != 1 {
		t.Fatalf("stats %+v: want 2 replayed, 1 executed", res.Stats)
	}
	for word, want := range map[string]int{"one": 1, "two": 1, "three": 2} {
		if n, _ := count(word); n != want {
			t.Errorf("step %s: %d provider requests, want %d", word, n, want)
		}
	}
	// The step in flight at the crash ran again under the same key.
	if _, keys := count("three"); len(keys) != 2 || keys[0] != "crash-run/3" || keys[1] != "crash-run/3" {
		t.Fatalf("Idempotency-Key of step three: %v, want crash-run/3 twice", keys)
	}
	// A finished run replays nothing and calls nothing.
	before := srv.Calls()
	if again, err := rt.Resume(bg, "crash-run"); err != nil || again.Status != journal.StatusCompleted || srv.Calls() != before {
		t.Fatalf("resume of a completed run: %v %v, calls %d→%d", again, err, before, srv.Calls())
	}
}
