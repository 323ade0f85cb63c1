package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
	"github.com/starflow/starflow/server"
)

var noop = &runtime.Builtin{Name: "noop", Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
	return starlark.None, nil
}}

func benchServer(b *testing.B) *fixture {
	e := runtest.New(b, func(o *runtime.Options) {
		o.Clock = time.Now
		o.Logger = zerolog.Nop()
		o.Builtins = append(o.Builtins, noop)
		o.MaxInlineWait = 10 * time.Millisecond
	})
	srv, err := server.New(e.RT, server.Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop(), AllowInlineSource: true})
	if err != nil {
		b.Fatal(err)
	}
	srv.Listen()
	ctx, cancel := context.WithCancel(bg)
	f := &fixture{env: e, srv: srv, client: server.NewClient(srv.Addr(), ""), stop: cancel, done: make(chan error, 1)}
	go func() { f.done <- srv.Serve(ctx) }()
	b.Cleanup(func() { f.shutdown() })
	return f
}

// BenchmarkWaitingRuns measures what 10,000 waiting runs (half on a
// timer, half on a human) cost a server: the runs are created and left
// waiting, the store is closed, and a fresh server recovers them over the
// reopened store. Reported per run: goroutines (target zero) and heap
// (target under 2 KiB), measured after recovery against the server's
// footprint with an empty store.
func BenchmarkWaitingRuns(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		opts := func(o *runtime.Options) {
			o.Clock = time.Now
			o.Logger = zerolog.Nop()
			o.Builtins = append(o.Builtins, noop)
		}
		// Phase 1: create the runs and let them reach their waits.
		{
			store, err := badgerstore.Open(dir, badgerstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			e := runtest.New(b, opts)
			rt, _ := runtime.New(store, e.Opts)
			timer := "def main(input):\n    noop()\n    sleep('1h')\n"
			human := "def main(input):\n    noop()\n    ask_human('ok?')\n"
			for r := 0; r < n; r++ {
				src := timer
				if r%2 == 1 {
					src = human
				}
				out, err := rt.Start(bg, runtime.StartRequest{ID: fmt.Sprintf("w%05d", r), Script: "wf.star", Durability: journal.DurabilityAsync,
					Sources: map[string][]byte{"wf.star": []byte(src)}})
				if err != nil || out.Status != journal.StatusWaiting {
					b.Fatalf("%+v %v", out, err)
				}
			}
			store.Close()
		}
		// Phase 2: a server recovers them.
		store, err := badgerstore.Open(dir, badgerstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		e := runtest.New(b, opts)
		rt, _ := runtime.New(store, e.Opts)
		srv, _ := server.New(rt, server.Options{Addr: "127.0.0.1:0", Logger: zerolog.Nop()})
		srv.Listen()
		goruntime.GC()
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		g0 := goruntime.NumGoroutine()
		ctx, cancel := context.WithCancel(bg)
		done := make(chan error)
		go func() { done <- srv.Serve(ctx) }()
		for {
			_, _, timers := srv.Stats()
			if timers == n/2 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		goruntime.GC()
		goruntime.ReadMemStats(&after)
		// The server itself starts its workers and listener: count them
		// out by comparing with an idle server's goroutines (concurrency 16
		// workers + timer loop + HTTP server).
		base := 16 + 2
		b.ReportMetric(float64(goruntime.NumGoroutine()-g0-base)/n, "goroutines/run")
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heap-B/run")
		cancel()
		<-done
		store.Close()
	}
}

// BenchmarkAnswerToResumed measures from an answer arriving to the run's
// completion, for a run that made 100 journaled calls before asking: the
// server replays those 100 calls, takes the answer and finishes (target:
// under 20 ms).
func BenchmarkAnswerToResumed(b *testing.B) {
	f := benchServer(b)
	src := "def main(input):\n    for i in range(100):\n        noop()\n    return ask_human('ok?')\n"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := fmt.Sprintf("a%d", i)
		r, err := f.client.Start(bg, server.StartRequest{ID: id, Source: src, Wait: "10s"})
		if err != nil || r.Status != journal.StatusWaiting {
			b.Fatalf("%+v %v", r, err)
		}
		b.StartTimer()
		if _, err := f.client.Answer(bg, id, json.RawMessage(`"yes"`), ""); err != nil {
			b.Fatal(err)
		}
		r, err = f.client.Wait(bg, id, 10*time.Second)
		for err == nil && r.Status != journal.StatusCompleted {
			r, err = f.client.WaitWhile(bg, id, r.Status, 10*time.Second)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
