package llm_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// BenchmarkConcurrentJournaledCalls is the throughput of llm() calls made
// by concurrent runs (each run one call, journaled with sync durability)
// against a loopback OpenAI-format server.
func BenchmarkConcurrentJournaledCalls(b *testing.B) {
	srv := llmtest.New(b, llmtest.OpenAI, "openai", "")
	srv.KeepRequests(false)
	h := newHarness(b, parse(b, `
providers:
  openai: {type: openai, base_url: %s}
models:
  default:
    deployments:
      - {provider: openai, model: gpt-4o}
`, srv.URL()))
	src := []byte("def main(input):\n    return llm(\"hello \" + str(input)).text\n")
	var id atomic.Int64
	b.SetParallelism(16)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := id.Add(1)
			out, err := h.rt.Start(bg, runtime.StartRequest{ID: fmt.Sprintf("b-%d", n), Script: "wf.star",
				Sources: map[string][]byte{"wf.star": src}, Input: []byte(fmt.Sprint(n))})
			if err != nil || out.Status != journal.StatusCompleted {
				b.Errorf("run: %v %+v", err, out)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
