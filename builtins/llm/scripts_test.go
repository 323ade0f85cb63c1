package llm_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/runtime"
)

func (h *harness) runFile(path, input string) *runtime.Outcome {
	h.t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	h.n++
	out, err := h.rt.Start(bg, runtime.StartRequest{ID: "script-" + string(rune('a'+h.n)), Script: "script.star",
		Sources: map[string][]byte{"script.star": src}, Input: json.RawMessage(input)})
	if err != nil {
		h.t.Fatalf("Start %s: %v", path, err)
	}
	return out
}

func noEnv(string) string { return "" }

// The scripts a newcomer runs first must work offline, with no
// configuration and no keys.
func TestFailoverDemoRunsOffline(t *testing.T) {
	fromFile, err := llm.LoadConfig("../../scripts/failover_demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*llm.Config{"defaults": llm.DefaultConfig(noEnv), "failover_demo.yaml": fromFile} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, cfg)
			res := h.result(h.runFile("../../scripts/failover_demo.star", `{"calls": 16}`))
			byTier, _ := res["answered_by_tier"].(map[string]any)
			if num(byTier["1"])+num(byTier["2"]) != 16 || num(byTier["2"]) == 0 || num(byTier["1"]) == 0 {
				t.Fatalf("answered_by_tier %v: want both tiers to answer some of the 16 calls", byTier)
			}
			cls, _ := res["classification"].(map[string]any)
			if cls["label"] == nil || cls["urgency"] == nil {
				t.Fatalf("classification %v", res["classification"])
			}
			if r, _ := res["refusal"].(map[string]any); r["ok"] != false || r["kind"] != "refusal" {
				t.Fatalf("refusal %v", res["refusal"])
			}
			// Seeded fakes: a second run fails over the same way.
			again := newHarness(t, cfg)
			res2 := again.result(again.runFile("../../scripts/failover_demo.star", `{"calls": 16}`))
			a, _ := json.Marshal(res["calls"])
			b, _ := json.Marshal(res2["calls"])
			if string(a) != string(b) {
				t.Fatalf("the demo is not reproducible:\n%s\n%s", a, b)
			}
		})
	}
}

func TestSummarizeClassifyRunsOffline(t *testing.T) {
	h := newHarness(t, llm.DefaultConfig(noEnv))
	res := h.result(h.runFile("../../scripts/summarize_classify.star", `null`))
	tickets, _ := res["tickets"].([]any)
	if len(tickets) != 4 {
		t.Fatalf("result %v", res)
	}
	for _, x := range tickets {
		tk := x.(map[string]any)
		if tk["summary"] == "" || tk["label"] == nil || tk["summarised_by"] != "fake/fake-small" {
			t.Fatalf("ticket %v", tk)
		}
	}
	// The same input and model give the same answers (the fake is
	// deterministic), and a resumed finished run calls nothing.
	out := h.runFile("../../scripts/summarize_classify.star", `{"tickets": [{"id": "X", "body": "The login page is down for everyone."}], "classify_model": "fake"}`)
	if h.result(out)["tickets"] == nil {
		t.Fatal("no tickets")
	}
}
