package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"os"

	"github.com/starflow/starflow/builtins"
	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

// A workflow that calls an API which fails once before it answers. The
// call is retried inside one journaled step; a replay would answer it from
// the journal without a request.
func Example() {
	calls := 0
	api := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		calls++
		if calls == 1 {
			w.WriteHeader(nethttp.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"order": 42, "key": %q}`, r.Header.Get("Idempotency-Key"))
	}))
	defer api.Close()

	dir, _ := os.MkdirTemp("", "starflow-http-example")
	defer os.RemoveAll(dir)
	store, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	mod, err := sfhttp.New(sfhttp.Options{})
	if err != nil {
		panic(err)
	}
	globals := builtins.Globals()
	for k, v := range mod.Globals() {
		globals[k] = v
	}
	rt, err := runtime.New(store, runtime.Options{
		Builtins: append(builtins.Standard(), mod.Builtins()...),
		Globals:  globals,
	})
	if err != nil {
		panic(err)
	}

	script := `
def main(input):
    r = http.post(input["url"] + "/orders", json = {"item": "book"}, retry = retry_policy(initial = "10ms"))
    return {"status": r.status, "attempts": r.attempts, "order": r.json["order"], "key": r.json["key"]}
`
	in, _ := json.Marshal(map[string]string{"url": api.URL})
	out, err := rt.Start(context.Background(), runtime.StartRequest{
		ID: "order-run", Script: "order.star", Sources: map[string][]byte{"order.star": []byte(script)}, Input: in,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(out.Status, string(out.Result))
	// Output:
	// completed {"status":200,"attempts":2,"order":42,"key":"order-run/1"}
}
