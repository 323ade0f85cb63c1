package http_test

import (
	"errors"
	"fmt"
	nethttp "net/http"
	"sync"
	"testing"
	"time"

	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// The http builtin never waits itself: the wait before a retry is the
// runtime's, on the runtime's clock. These tests use a settable clock and
// never sleep.

// A 429 asking for two hours suspends the run (status waiting, a durable
// timer) instead of holding a goroutine; the next attempt is made when
// the run resumes after the wait, with the same idempotency key.
func TestLongRetryAfterSuspendsTheRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value func(now time.Time) string // the Retry-After header
		kw    string
		opts  sfhttp.Options
	}{
		{"seconds within the deadline", func(time.Time) string { return "7200" }, `, deadline = "3h"`, sfhttp.Options{}},
		// An HTTP date is read on the runtime's clock.
		{"date within MaxRetryAfter", func(now time.Time) string { return now.Add(2 * time.Hour).UTC().Format(nethttp.TimeFormat) }, ``,
			sfhttp.Options{MaxRetryAfter: 3 * time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock *runtest.Clock
			srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tc.value(clock.Now()))
					w.WriteHeader(nethttp.StatusTooManyRequests)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"n": %d}`, n)
			})
			opts := tc.opts
			opts.Retry = fast
			h := newHarness(t, opts)
			clock = h.clock
			src := `
def main(input):
    r = http.post(input["url"] + "/charges", json = {"amount": 1}` + tc.kw + `)
    return {"status": r.status, "attempts": r.attempts, "n": r.json["n"]}
`
			out := h.start("long", src, input(srv.URL))
			if out.Status != journal.StatusWaiting || out.Waiting == nil || !out.Waiting.Retry {
				t.Fatalf("status %s, waiting %+v, error %+v; want waiting to retry", out.Status, out.Waiting, out.Error)
			}
			if want := clock.Now().Add(2 * time.Hour); out.Waiting.Until == nil || !out.Waiting.Until.Equal(want) {
				t.Fatalf("wakes at %v, want %s", out.Waiting.Until, want)
			}
			if n := srv.count(); n != 1 {
				t.Fatalf("%d requests before the wait, want 1", n)
			}
			clock.Advance(time.Hour)
			if out = h.resume("long"); out.Status != journal.StatusWaiting || srv.count() != 1 {
				t.Fatalf("resumed an hour early: %s after %d requests", out.Status, srv.count())
			}
			clock.Advance(time.Hour)
			out = h.resume("long")
			runtest.MustResult(t, out, `{"status": 200, "attempts": 2, "n": 2}`)
			for i, r := range srv.requests() {
				if k := r.Header.Get("Idempotency-Key"); k != "long/1" {
					t.Fatalf("request %d: Idempotency-Key %q, want long/1", i+1, k)
				}
			}
			d := h.details("long")["1"]
			if len(d.Attempts) != 2 || d.Attempts[0].Status != 429 || d.Attempts[0].RetryAfterMs != 7_200_000 ||
				d.Attempts[0].WaitMs != 7_200_000 || d.Attempts[1].Status != 200 || d.Status != 200 {
				t.Fatalf("detail %+v", d)
			}
		})
	}
}

// Short waits are waited in process, by the runtime: under SkipWaits they
// move the runtime's clock instead of sleeping.
func TestShortWaitsAreTheRuntimes(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(nethttp.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(nethttp.StatusInternalServerError)
		default:
			fmt.Fprint(w, "ok")
		}
	})
	h := newHarness(t, sfhttp.Options{}) // with SkipWaits
	srv.useClock(h.rt.Now)
	res := h.result("skip", getScript, input(srv.URL, "retry", map[string]any{"initial": "2s", "jitter": 0}))
	if res["status"] != 200.0 || res["attempts"] != 3.0 {
		t.Fatalf("result %v", res)
	}
	// Retry-After: 30 (longer than the 2s backoff), then 4s of backoff.
	if w := h.waited(); w != 34*time.Second {
		t.Fatalf("the runtime's clock moved %s, want the 34s of waits", w)
	}
	reqs := srv.requests()
	if len(reqs) != 3 || reqs[1].At.Sub(reqs[0].At) != 30*time.Second || reqs[2].At.Sub(reqs[1].At) != 4*time.Second {
		t.Fatalf("requests %+v", reqs)
	}
	d := h.details("skip")["1"]
	if d.Attempts[0].WaitMs != 30_000 || d.Attempts[1].WaitMs != 4_000 {
		t.Fatalf("detail %+v", d)
	}
}

// Drain ends a wait between attempts at once; the run is left resumable
// and sends its request again, with the same key, when it resumes.
func TestDrainInterruptsTheWaitBeforeARetry(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(nethttp.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	var once sync.Once
	waiting := make(chan struct{})
	h := newHarness(t, sfhttp.Options{}, func(o *runtime.Options) {
		o.SkipWaits = false // a wait in process, for real
		o.OnCall = func(ev runtime.CallEvent) {
			if ev.Outcome == "retry" && ev.Wait == 30*time.Second {
				once.Do(func() { close(waiting) })
			}
		}
	})
	drained := make(chan struct{})
	go func() {
		<-waiting
		h.rt.Drain()
		close(drained)
	}()
	src := `
def main(input):
    r = http.post(input["url"], body = "x")
    return {"status": r.status, "attempts": r.attempts}
`
	_, err := h.rt.Start(bg, runtime.StartRequest{ID: "d", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(src)},
		Input: []byte(fmt.Sprintf(`{"url": %q}`, srv.URL))})
	if !errors.Is(err, runtime.ErrInterrupted) {
		t.Fatalf("Start: %v; want interrupted by Drain during the wait", err)
	}
	<-drained
	if n := srv.count(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	// A new process continues the run.
	rt2, err := runtime.New(h.store, runtime.Options{Builtins: h.rt.Builtins(), Globals: globals(h.mod), SkipWaits: true})
	if err != nil {
		t.Fatal(err)
	}
	out, err := rt2.Resume(bg, "d")
	if err != nil {
		t.Fatal(err)
	}
	runtest.MustResult(t, out, `{"status": 200, "attempts": 1}`)
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].Header.Get("Idempotency-Key") != "d/1" || reqs[1].Header.Get("Idempotency-Key") != "d/1" {
		t.Fatalf("requests %+v", reqs)
	}
}
