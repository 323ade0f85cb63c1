package chaos_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
)

// Faults are injected into requests that carry credentials: neither the
// injected failures, nor the event log, nor the summary, nor the journal
// and logs of the run that suffered them contain a credential.
func TestSecretsStayOutOfFaultsAndJournal(t *testing.T) {
	o := newOrigin(t, `{"paid": true}`)
	oa := llmtest.New(t, llmtest.OpenAI, "openai", testSecrets["OPENAI_API_KEY"])
	cfg, err := llm.ParseConfig("t.yaml", []byte(fmt.Sprintf(`
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    retry: {initial: 10ms, jitter: 0}
    deployments: [{provider: openai, model: gpt-test}]
`, oa.URL())))
	if err != nil {
		t.Fatal(err)
	}
	p := inline(t, "http:reset+after_send#1,http:503#1,http:timeout=20ms#1,llm:429=10ms#1,llm:reset#1,llm:502#1", 5)
	h := newHarness(t, p, setup{llm: cfg})
	res := h.result(`
def main(input):
    r1 = attempt(http.post, input["url"] + "/v1/pay", auth = http.bearer(secret("API_TOKEN")),
                 params = {"api_key": secret("API_TOKEN")}, json = {"amount": 1}, timeout = "300ms")
    r2 = attempt(llm, "hello")
    return {"http": r1.ok, "llm": r2.ok, "llm_error": r2.error}
`, map[string]any{"url": o.URL})
	// http: reset (after the server acted), 503, timeout, then success on
	// the 4th attempt; llm: 429, reset, 502 over its 3 rounds: it fails.
	if res["http"] != true || res["llm"] != false || len(o.requests()) != 2 || oa.Calls() != 0 {
		t.Fatalf("result %v; origin saw %d requests, provider %d", res, len(o.requests()), oa.Calls())
	}
	if got := o.requests()[0].Header.Get("Authorization"); got != "Bearer "+testSecrets["API_TOKEN"] {
		t.Fatalf("the request carried Authorization %q: the scan below would prove nothing", got)
	}
	if s := h.inj.Summary(); s.Faulted != 6 {
		t.Fatalf("summary %+v", s)
	}
	var texts []string
	texts = append(texts, h.logs.String(), fmt.Sprintf("%+v", h.inj.Events()), h.inj.Summary().String(), fmt.Sprint(res))
	err = filepath.Walk(h.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		texts = append(texts, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range testSecrets {
		for _, s := range texts {
			if strings.Contains(s, v) {
				t.Fatalf("%s's value leaked", name)
			}
		}
	}
}
