package chaos_test

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/starflow/starflow/chaos"
)

// The cost the injector adds to a request it leaves alone, and to one it
// fails (an injected 503), over an in-memory base transport.
func BenchmarkTransport(b *testing.B) {
	for _, bc := range []struct{ name, spec string }{
		{"base", ""},
		{"no-match", "llm:503@0.5,http[api.other.com]:reset@0.5,http[POST]:latency=1ms"},
		{"rate-0", "http:503@0,http:reset@0,http:latency=1ms@0"},
		{"inject-503", "http:503"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var rt http.RoundTripper = answer{}
			if bc.spec != "" {
				p, err := chaos.ParseInline(bc.spec, 1)
				if err != nil {
					b.Fatal(err)
				}
				rt = chaos.New(p).HTTPTransport(answer{})
			}
			req, _ := http.NewRequest("GET", "https://api.example.com/v1/items", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

// Many goroutines on many targets through one injector.
func BenchmarkTransportParallel(b *testing.B) {
	p, err := chaos.ParseInline("http:503@0.1,http:reset@0.05", 1)
	if err != nil {
		b.Fatal(err)
	}
	rt := chaos.New(p).HTTPTransport(answer{})
	var g atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		host := "h" + strconv.FormatInt(g.Add(1), 10) + ".example.com"
		req, _ := http.NewRequest("GET", "https://"+host+"/", nil)
		for pb.Next() {
			if resp, err := rt.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}
	})
}
