package http_test

import (
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// BenchmarkCallOverhead compares a journaled http.get to a loopback server
// with a bare net/http GET to the same server, in the same run: the
// difference is the cost of the journal (one synced write per call in the
// default durability), the Starlark call and the retry machinery. A
// journaled no-op, now(), gives the journal's share.
func BenchmarkCallOverhead(b *testing.B) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok": true}`)
	}))
	defer srv.Close()

	b.Run("net/http", func(b *testing.B) {
		client := &nethttp.Client{}
		for b.Loop() {
			resp, err := client.Get(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})

	// A journaled no-op (now()) separates the journal's cost from http's.
	for _, call := range []string{"http.get(input[\"url\"])", "now()"} {
		for _, d := range []journal.Durability{journal.DurabilitySync, journal.DurabilityAsync} {
			name := call[:strings.Index(call, "(")] + "/" + string(d)
			b.Run(name, func(b *testing.B) {
				h := newHarness(b, sfhttp.Options{}, func(o *runtime.Options) { o.Durability = d })
				src := `
def main(input):
    for i in range(input["n"]):
        ` + call + `
    return {}
`
				b.ResetTimer()
				out := h.start("bench", src, map[string]any{"url": srv.URL, "n": b.N})
				b.StopTimer()
				if out.Status != journal.StatusCompleted {
					b.Fatalf("status %s: %+v", out.Status, out.Error)
				}
			})
		}
	}
}
