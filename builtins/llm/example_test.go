package llm_test

import (
	"context"
	"fmt"

	"github.com/starflow/starflow/builtins/llm"
)

// A two-tier alias on the deterministic fake provider: the primary fails
// every call, the secondary answers, and the result says which tier did.
func Example() {
	cfg, err := llm.ParseConfig("example.yaml", []byte(`
providers:
  broken: {type: fake, failure_rate: 1}
  steady: {type: fake}
models:
  default:
    deployments:
      - {name: primary, provider: broken, model: fake-large, tier: 1}
      - {name: secondary, provider: steady, model: fake-small, tier: 2}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := llm.New(llm.Options{Config: cfg})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := m.Complete(context.Background(), llm.Request{Prompt: "Summarise: the build is green and the release ships on Friday."})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Text)
	fmt.Printf("deployment=%s tier=%d attempts=%d\n", res.Deployment, res.Tier, res.Attempts)
	// Output:
	// Overall: the build is green and the release ships on Friday. (fake answer e6fb3e1f)
	// deployment=secondary tier=2 attempts=2
}

// Configuration errors name the file and line.
func ExampleParseConfig() {
	_, err := llm.ParseConfig("llm.yaml", []byte(`
providers:
  openai:
    type: openai
    api_key: env(OPENAI_API_KEY)
models:
  default:
    strategy: fastest
    deployments:
      - {provider: openai, model: gpt-4o-mini}
`))
	fmt.Println(err)
	// Output:
	// llm.yaml:8: model default: unknown strategy "fastest" (one of weighted, round_robin, latency, priority, capacity)
}
