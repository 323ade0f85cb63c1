package llm_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm/llmtest"
)

// TestKeysNeverReachJournalLogsOrErrors runs calls that succeed, fail
// over, wait, and fail with a provider that echoes the key it was given,
// then scans every raw file of the Badger store, the logs and the errors
// for the keys.
func TestKeysNeverReachJournalLogsOrErrors(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", openAIKey)
	an := llmtest.New(t, llmtest.Anthropic, "anthropic", anthropicKey)
	g := llmtest.New(t, llmtest.Gemini, "gemini", geminiKey)
	echo := llmtest.New(t, llmtest.OpenAI, "echo", "")
	oa.Script(llmtest.Reply{Fault: llmtest.ServerError})
	g.Script(llmtest.Reply{Fault: llmtest.RateLimit, RetryAfter: 50 * time.Millisecond})
	echo.Handle(func(*llmtest.Request) llmtest.Reply { return llmtest.Reply{Fault: llmtest.Unauthorized} })
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
  anthropic: {type: anthropic, base_url: %s, api_key: secret(ANTHROPIC_API_KEY)}
  gemini: {type: gemini, base_url: %s}
  echo: {type: openai, base_url: %s, api_key: env(OPENAI_API_KEY)}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o, tier: 1}
      - {provider: anthropic, model: claude, tier: 2}
  gemini:
    retry: {initial: 10ms}
    deployments:
      - {provider: gemini, model: gemini-2.5-flash}
  echo:
    deployments:
      - {provider: echo, model: gpt-4o}
`, oa.URL(), an.URL(), g.URL(), echo.URL()))
	src := `
def main(input):
    a = llm("first")
    b = llm("second", model="gemini")
    c = attempt(lambda: llm("third", model="echo"))
    log("done", kind=c.kind, error=c.error)
    return {"a": a.provider, "b": b.provider, "c": c.error}
`
	out := h.run(src)
	res := h.result(out)
	if res["a"] != "anthropic" || res["b"] != "gemini" {
		t.Fatalf("result %v", res)
	}
	msg, _ := res["c"].(string)
	if !strings.Contains(msg, "Incorrect API key provided") {
		t.Fatalf("the echo provider's error should be reported (scrubbed): %q", msg)
	}
	// The keys were really sent, so their absence below means something.
	if an.Requests()[0].Key != anthropicKey || echo.Requests()[0].Key != openAIKey || g.Requests()[0].Key != geminiKey {
		t.Fatal("the providers did not receive the configured keys")
	}
	keys := []string{openAIKey, anthropicKey, geminiKey}
	for _, k := range keys {
		if strings.Contains(msg, k) || strings.Contains(string(out.Result), k) {
			t.Fatalf("key in the error or result: %s", msg)
		}
		if strings.Contains(h.logs.String(), k) {
			t.Fatalf("key in the logs:\n%s", h.logs.String())
		}
	}
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	scanned := 0
	err := filepath.WalkDir(h.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned += len(data)
		for _, k := range keys {
			if bytes.Contains(data, []byte(k)) {
				t.Errorf("key found in raw store file %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned == 0 {
		t.Fatal("scanned nothing")
	}
	// The journal did record the calls (the scan looked at real data).
	var found bool
	_ = filepath.WalkDir(h.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			found = found || bytes.Contains(data, []byte("Incorrect API key provided"))
		}
		return nil
	})
	if !found {
		t.Fatal("the journal's error text was not found in the raw files; the scan proves nothing")
	}
}
