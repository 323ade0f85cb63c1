package llm_test

import (
	"context"
	"fmt"
	"github.com/starflow/starflow/internal/runtest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// Test keys: long and distinctive so that a scan of raw files finds them
// if they leak anywhere.
const (
	openAIKey    = "sk-test-openai-KEY-7f3a9c1e5b2d4f60"
	anthropicKey = "sk-ant-test-KEY-0c9e8d7f6a5b4c3d"
	geminiKey    = "AIzaTestGeminiKEY-a1b2c3d4e5f6g7h8i9"
	azureKey     = "azure-test-KEY-3141592653589793"
)

var testSecrets = map[string]string{
	"OPENAI_API_KEY":       openAIKey,
	"ANTHROPIC_API_KEY":    anthropicKey,
	"GEMINI_API_KEY":       geminiKey,
	"AZURE_OPENAI_API_KEY": azureKey,
}

func secrets(name string) (string, error) {
	if v, ok := testSecrets[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("environment variable %s is not set", name)
}

type logBuffer = runtest.LogBuffer

// parse builds a configuration from YAML written with fmt verbs.
func parse(t testing.TB, format string, args ...any) *llm.Config {
	t.Helper()
	cfg, err := llm.ParseConfig("test.yaml", []byte(fmt.Sprintf(format, args...)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// harness is a runtime with the llm module over a real Badger store. The
// module's clock is the runtime's (as cmd/starflow wires it), and the
// runtime skips waits (SkipWaits) by moving that clock, so no test waits
// for a backoff or a cooldown for real.
type harness struct {
	t     testing.TB
	dir   string
	store *badgerstore.Store
	rt    *runtime.Runtime
	mod   *llm.Module
	logs  *logBuffer
	n     int
}

// newHarness builds a harness; mods are func(*llm.Options) or
// func(*runtime.Options), applied before the module and the runtime are
// built.
func newHarness(t testing.TB, cfg *llm.Config, mods ...any) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), logs: &logBuffer{}}
	s, err := badgerstore.Open(h.dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.store = s
	t.Cleanup(func() { s.Close() })
	log := zerolog.New(h.logs)
	opts := llm.Options{Config: cfg, KV: s, Logger: log, Secrets: secrets, Now: func() time.Time { return h.rt.Now() }}
	ropts := runtime.Options{Globals: builtins.Globals(), Logger: log, Secrets: secrets, SkipWaits: true}
	for _, m := range mods {
		switch m := m.(type) {
		case func(*llm.Options):
			m(&opts)
		case func(*runtime.Options):
			m(&ropts)
		default:
			t.Fatalf("newHarness: %T is not an option", m)
		}
	}
	h.mod, err = llm.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ropts.Builtins = append(append(builtins.Standard(), h.mod.Builtins()...), ropts.Builtins...)
	h.rt, err = runtime.New(s, ropts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// run starts a new run of src and returns its outcome.
func (h *harness) run(src string) *runtime.Outcome {
	h.t.Helper()
	h.n++
	out, err := h.rt.Start(bg, runtime.StartRequest{ID: fmt.Sprintf("run-%d", h.n), Script: "wf.star",
		Sources: map[string][]byte{"wf.star": []byte(src)}})
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return out
}

// result decodes a completed run's result.
func (h *harness) result(out *runtime.Outcome) map[string]any {
	h.t.Helper()
	if out.Status != journal.StatusCompleted {
		h.t.Fatalf("run %s: status %s, error %+v", out.ID, out.Status, out.Error)
	}
	return runtest.ResultObject(h.t, out)
}

// details returns the journal detail of each llm call of a run.
func (h *harness) details(id string) []map[string]any {
	h.t.Helper()
	return runtest.Details(h.t, h.store, id)
}

// one runs a script whose main returns llm(...)'s result and returns it.
func (h *harness) one(call string) map[string]any {
	h.t.Helper()
	return h.result(h.run("def main(input):\n    return " + call + "\n"))
}

// fails runs a script that catches llm(...)'s failure and returns it.
func (h *harness) fails(call string) (kind, msg string) {
	h.t.Helper()
	src := "def main(input):\n    r = attempt(lambda: " + call + ")\n    return {'ok': r.ok, 'kind': r.kind, 'error': r.error}\n"
	res := h.result(h.run(src))
	if res["ok"] == true {
		h.t.Fatalf("%s succeeded, want a failure", call)
	}
	k, _ := res["kind"].(string)
	m, _ := res["error"].(string)
	return k, m
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
