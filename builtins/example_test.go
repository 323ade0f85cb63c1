package builtins_test

import (
	"context"
	"fmt"
	"os"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

// attempt() lets a script handle a failed call; the failure is journaled
// like a result and replays the same way.
func Example_attempt() {
	dir, _ := os.MkdirTemp("", "starflow-builtins")
	defer os.RemoveAll(dir)
	store, _ := badgerstore.Open(dir, badgerstore.Options{})
	defer store.Close()
	rt, _ := runtime.New(store, runtime.Options{Builtins: builtins.Standard(), Globals: builtins.Globals()})
	src := `
def main(input):
    r = attempt(sleep, "a fortnight")
    return {"ok": r.ok, "kind": r.kind}
`
	out, _ := rt.Start(context.Background(), runtime.StartRequest{Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)}})
	fmt.Println(string(out.Result))
	// Output: {"ok":false,"kind":"invalid_argument"}
}
