package llm_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/runtime"
)

// A fork reuses the journal up to the chosen call: the provider sees no
// request for the calls before it, and with --set-result the fork goes on
// from a different answer.
func TestForkMakesNoProviderCallsForReusedSteps(t *testing.T) {
	oa := llmtest.New(t, llmtest.OpenAI, "openai", "")
	h := newHarness(t, parse(t, `
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o}
`, oa.URL()))
	src := `
def main(input):
    a = llm("one: outline the plan")
    b = llm("two: draft the text")
    c = llm("three: review " + b.text)
    return [a.text, b.text, c.text]
`
	out := h.run(src)
	if out.Status != "completed" || len(oa.Requests()) != 3 {
		t.Fatalf("original: %s %v, %d requests", out.Status, out.Error, len(oa.Requests()))
	}
	var orig []string
	json.Unmarshal(out.Result, &orig)

	fork, err := h.rt.Fork(bg, out.ID, runtime.ForkRequest{ID: "fork", At: 2, SetResult: json.RawMessage(`{"text": "a better draft"}`)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.rt.Resume(bg, fork.ID)
	if err != nil || res.Status != "completed" {
		t.Fatalf("fork: %+v %v", res, err)
	}
	reqs := oa.Requests()
	if len(reqs) != 4 {
		t.Fatalf("the provider saw %d requests, want 4 (3 original + call 3 of the fork)", len(reqs))
	}
	last := reqs[3]
	body, _ := json.Marshal(last.Body)
	if !strings.Contains(string(body), "three: review a better draft") || last.IdempotencyKey != "fork/3" {
		t.Fatalf("fork's request: key %q body %s", last.IdempotencyKey, body)
	}
	var got []string
	json.Unmarshal(res.Result, &got)
	if got[0] != orig[0] || got[1] != "a better draft" {
		t.Fatalf("fork result %v (original %v)", got, orig)
	}
}
