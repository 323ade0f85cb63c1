package llm

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/builtins/llm/provider"
)

// nullProvider answers at once: what remains of a call's time is the
// module's own work (routing, health bookkeeping, digest, trace).
type nullProvider struct{}

func (nullProvider) Complete(ctx context.Context, req *provider.Request, key string) (*provider.Response, error) {
	return &provider.Response{Text: "ok", Model: req.Model, Usage: provider.Usage{InputTokens: 10, OutputTokens: 2}, RateLimit: provider.NoRateLimit}, nil
}

func tenDeployments(b *testing.B, strategy Strategy) *Module {
	b.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "providers:\n  sim: {type: fake}\nmodels:\n  default:\n    strategy: %s\n    deployments:\n", strategy)
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&y, "      - {name: d%d, provider: sim, model: m%d, weight: %d, rpm: 1000000000, tpm: 1000000000}\n", i, i, i+1)
	}
	cfg, err := ParseConfig("bench.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range m.aliases["default"].tiers {
		for _, mb := range t.members {
			mb.client = nullProvider{}
		}
	}
	return m
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkRoutingOverhead measures what llm adds on top of the provider's
// round trip: one call through routing, breaker, capacity and latency
// bookkeeping, digest and trace, against a provider that answers at once,
// with 10 deployments. It reports the 99th percentile per call (target:
// under 50µs).
func BenchmarkRoutingOverhead(b *testing.B) {
	for _, s := range []Strategy{Weighted, Latency, Capacity, Priority} {
		b.Run(string(s), func(b *testing.B) {
			m := tenDeployments(b, s)
			req := Request{Prompt: "Summarise: the quarterly numbers are in and revenue is up twelve percent.", Key: "bench/1"}
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := m.Complete(ctx, req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			b.ReportMetric(float64(percentile(lat, 0.50).Nanoseconds()), "p50-ns/call")
			b.ReportMetric(float64(percentile(lat, 0.99).Nanoseconds()), "p99-ns/call")
		})
	}
}

// BenchmarkLoopbackCall compares one OpenAI-format round trip over
// loopback sent directly with the same call through the module.
func BenchmarkLoopbackCall(b *testing.B) {
	srv := llmtest.New(b, llmtest.OpenAI, "bench", "")
	srv.KeepRequests(false)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	direct, err := provider.NewHTTP(provider.OpenAI, srv.URL(), "", client)
	if err != nil {
		b.Fatal(err)
	}
	preq := &provider.Request{Model: "gpt-4o", Messages: []provider.Message{{Role: "user", Content: "hello"}}}
	b.Run("direct", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := direct.Complete(context.Background(), preq, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	cfg, err := ParseConfig("bench.yaml", []byte(fmt.Sprintf("providers:\n  oa: {type: openai, base_url: %s, api_key: env(BENCH_KEY)}\nmodels:\n  default:\n    deployments:\n      - {provider: oa, model: gpt-4o}\n", srv.URL())))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Options{Config: cfg, HTTPClient: client, Secrets: func(string) (string, error) { return "k", nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("module", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := m.Complete(context.Background(), Request{Prompt: "hello"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConcurrentCalls is the throughput of concurrent llm calls
// against a loopback OpenAI-format server, spread over two deployments.
func BenchmarkConcurrentCalls(b *testing.B) {
	a := llmtest.New(b, llmtest.OpenAI, "a", "")
	c := llmtest.New(b, llmtest.OpenAI, "c", "")
	a.KeepRequests(false)
	c.KeepRequests(false)
	cfg, err := ParseConfig("bench.yaml", []byte(fmt.Sprintf(`
providers:
  a: {type: openai, base_url: %s, api_key: env(BENCH_KEY)}
  c: {type: openai, base_url: %s, api_key: env(BENCH_KEY)}
models:
  default:
    deployments:
      - {provider: a, model: gpt-4o}
      - {provider: c, model: gpt-4o}
`, a.URL(), c.URL())))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Options{Config: cfg, Secrets: func(string) (string, error) { return "k", nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(8) // 8 × GOMAXPROCS callers
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Complete(context.Background(), Request{Prompt: "hello"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
