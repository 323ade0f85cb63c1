package chaos_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/chaos"
)

// answer is a stand-in for the network: it answers every request 200.
type answer struct{}

func (answer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
}

// An inline profile, replayed: the same seed gives the same faults to the
// same requests.
func Example() {
	p, err := chaos.ParseInline("http:503@0.3,http:reset@0.2,http[api.example.com]:latency=1ms..2ms@0.3", 42)
	if err != nil {
		panic(err)
	}
	for run := 1; run <= 2; run++ {
		inj := chaos.New(p)
		client := &http.Client{Transport: inj.HTTPTransport(answer{})}
		var got []string
		for i := 0; i < 8; i++ {
			resp, err := client.Get("https://api.example.com/orders")
			if err != nil {
				got = append(got, "reset")
				continue
			}
			resp.Body.Close()
			got = append(got, fmt.Sprint(resp.StatusCode))
		}
		fmt.Printf("run %d: %s\n", run, strings.Join(got, " "))
		if run == 2 {
			for _, line := range chaos.Sequence(inj.Events()) {
				fmt.Println(line)
			}
			fmt.Println(inj.Summary().Faulted, "of", inj.Summary().Requests, "requests faulted")
		}
	}
	// Output:
	// run 1: reset 503 503 200 200 reset 200 200
	// run 2: reset 503 503 200 200 reset 200 200
	// http/api.example.com #1 reset
	// http/api.example.com #2 503
	// http/api.example.com #2 latency 1.27ms
	// http/api.example.com #3 503
	// http/api.example.com #6 reset
	// 4 of 8 requests faulted
}

// How a command wires an Injector into the http and llm builtins.
func Example_wiring() {
	p, err := chaos.Load("llm[openai]:429=2s@0.2,llm[anthropic]:529@0.1,http:reset@0.05")
	if err != nil {
		panic(err)
	}
	inj := chaos.New(p.WithSeed(42)) // --chaos-seed 42

	httpMod, err := sfhttp.New(sfhttp.Options{WrapTransport: inj.HTTPTransport})
	if err != nil {
		panic(err)
	}
	llmMod, err := llm.New(llm.Options{HTTPClient: inj.LLMClient(nil), WrapProvider: inj.WrapLLMProvider})
	if err != nil {
		panic(err)
	}
	_, _ = httpMod, llmMod
	// ... run the workflow, then report:
	fmt.Print(inj.Summary())
}
