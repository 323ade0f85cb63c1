package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

const orderScript = `
def main(input):
    receipt = charge(input["customer"], input["amount"])
    log("charged", receipt = receipt["id"])
    return {"receipt": receipt["id"], "key": receipt["key"]}
`

// A host program registers its own journaled builtin and runs a workflow.
// The builtin runs once per call; its idempotency key is "<run-id>/<step>".
func Example() {
	dir, _ := os.MkdirTemp("", "starflow-example")
	defer os.RemoveAll(dir)
	store, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	charge := runtime.Func("charge", func(ctx context.Context, c *runtime.Call) (any, error) {
		var customer string
		var amount int
		if err := c.Unpack("customer", &customer, "amount", &amount); err != nil {
			return nil, err
		}
		// A real implementation passes c.Key to the payment API so that a
		// retry after a crash cannot charge twice.
		return map[string]any{"id": "rcpt-" + customer, "key": c.Key}, nil
	})
	charge.Retry = &runtime.RetryPolicy{MaxAttempts: 5}

	rt, err := runtime.New(store, runtime.Options{
		Builtins: append(builtins.Standard(), charge),
		Globals:  builtins.Globals(),
	})
	if err != nil {
		panic(err)
	}
	out, err := rt.Start(context.Background(), runtime.StartRequest{
		ID:      "order-42",
		Script:  "order.star",
		Sources: map[string][]byte{"order.star": []byte(orderScript)},
		Input:   []byte(`{"customer": "ada", "amount": 30}`),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(out.Status, string(out.Result))

	// Starting the same ID again returns the recorded outcome and runs
	// nothing.
	again, _ := rt.Start(context.Background(), runtime.StartRequest{ID: "order-42", Script: "order.star",
		Sources: map[string][]byte{"order.star": []byte(orderScript)}, Input: []byte(`{"customer": "ada", "amount": 30}`)})
	fmt.Println(again.Existed, again.Stats.Executed)
	// Output:
	// completed {"receipt":"rcpt-ada","key":"order-42/1"}
	// true 0
}

// A run that sleeps for a day suspends: Start returns with status waiting
// and no goroutine holds the run. Resume replays the journal and continues.
func ExampleRuntime_Resume() {
	dir, _ := os.MkdirTemp("", "starflow-example")
	defer os.RemoveAll(dir)
	store, _ := badgerstore.Open(dir, badgerstore.Options{})
	defer store.Close()

	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	rt, _ := runtime.New(store, runtime.Options{
		Builtins: builtins.Standard(),
		Globals:  builtins.Globals(),
		Clock:    func() time.Time { return now },
	})
	src := map[string][]byte{"remind.star": []byte(`
def main(input):
    sent = now()
    sleep("1d")
    return "remind %s (asked %s)" % (input, sent.format("Mon 15:04"))
`)}
	out, _ := rt.Start(context.Background(), runtime.StartRequest{ID: "remind-1", Script: "remind.star", Sources: src, Input: []byte(`"ada"`)})
	fmt.Println(out.Status, out.Waiting.Until.Format(time.DateTime))

	now = now.Add(25 * time.Hour)
	out, _ = rt.Resume(context.Background(), "remind-1")
	fmt.Println(out.Status, string(out.Result), out.Stats.Replayed)
	// Output:
	// waiting 2026-11-28 09:00:00
	// completed "remind ada (asked Fri 09:00)" 1
}

// Transient failures are retried with exponential backoff and jitter;
// permanent ones fail at once.
func ExampleRetryPolicy() {
	p := runtime.RetryPolicy{MaxAttempts: 5, InitialInterval: 500 * time.Millisecond, MaxInterval: 5 * time.Second}
	for n := 1; n <= 4; n++ {
		fmt.Println(n, p.Backoff(n))
	}
	busy := runtime.Transient("unavailable", errors.New("503 Service Unavailable"))
	denied := runtime.Permanent("http_status", errors.New("401 Unauthorized"))
	fmt.Println(p.ShouldRetry(busy, 1), p.ShouldRetry(denied, 1), p.ShouldRetry(busy, 5))
	// Output:
	// 1 500ms
	// 2 1s
	// 3 2s
	// 4 4s
	// true false false
}
