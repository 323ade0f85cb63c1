package http_test

import (
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/builtins"
	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

func TestPostRetriesCarryTheSameIdempotencyKey(t *testing.T) {
	srv := newServer(t, statuses(503, 503, 200))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("pay", `
def main(input):
    r = http.post(input["url"] + "/charges", json = {"amount": 100})
    return {"attempts": r.attempts}
`, input(srv.URL))
	if res["attempts"] != 3.0 {
		t.Fatalf("result %v", res)
	}
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, r := range reqs {
		if k := r.Header.Get("Idempotency-Key"); k != "pay/1" {
			t.Fatalf("request %d: Idempotency-Key %q, want pay/1", i+1, k)
		}
		if r.Body != `{"amount":100}` || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("request %d: body %q, content type %q", i+1, r.Body, r.Header.Get("Content-Type"))
		}
	}
	if d := h.details("pay")["1"]; d.IdempotencyKey != "pay/1" {
		t.Fatalf("detail %+v", d)
	}
}

func TestIdempotencyKeyOnEveryMethodButGet(t *testing.T) {
	srv := newServer(t, statuses(200))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	h.result("k", `
def main(input):
    u = input["url"]
    http.get(u)
    http.post(u)
    http.put(u, body = "x")
    http.patch(u, json = [1])
    http.delete(u)
    http.request("OPTIONS", u)
    http.request("head", u)
    http.post(u, headers = {"Idempotency-Key": "order-42"})
    return {}
`, input(srv.URL))
	var got []string
	for _, r := range srv.requests() {
		got = append(got, r.Method+"="+r.Header.Get("Idempotency-Key"))
	}
	want := "[GET= POST=k/2 PUT=k/3 PATCH=k/4 DELETE=k/5 OPTIONS=k/6 HEAD= POST=order-42]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v\nwant %s", got, want)
	}
}

// The crash test: the server lives in this process; the run executes in a
// re-executed test binary that is killed with SIGKILL, twice, then resumed
// here.

const (
	crashChildEnv = "SF_HTTP_CRASH_CHILD"
	crashStoreEnv = "SF_HTTP_CRASH_STORE"
	crashURLEnv   = "SF_HTTP_CRASH_URL"
	crashRunID    = "crash"
)

const crashScript = `
def main(input):
    u = input["url"]
    a = http.post(u + "/a", json = {"charge": "a"})
    http.get(u + "/gate")          # first child is killed while this waits
    b = http.post(u + "/b", json = {"charge": "b"})
    c = http.post(u + "/c", json = {"charge": "c"})  # second child is killed while this is in flight
    return {"a": a.json, "b": b.json, "c": c.json}
`

func crashRuntime(dir string, logTo io.Writer) (*badgerstore.Store, *runtime.Runtime, error) {
	store, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		return nil, nil, err
	}
	mod, err := sfhttp.New(sfhttp.Options{Retry: fast})
	if err != nil {
		return nil, nil, err
	}
	rt, err := runtime.New(store, runtime.Options{
		Builtins: append(builtins.Standard(), mod.Builtins()...),
		Globals:  globals(mod),
		Logger:   zerolog.New(logTo),
	})
	return store, rt, err
}

// crashChild is the child role: start (or continue) the run, and report.
func crashChild() int {
	store, rt, err := crashRuntime(os.Getenv(crashStoreEnv), os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	defer store.Close()
	in, _ := json.Marshal(map[string]string{"url": os.Getenv(crashURLEnv)})
	out, err := rt.Start(bg, runtime.StartRequest{ID: crashRunID, Script: "crash.star",
		Sources: map[string][]byte{"crash.star": []byte(crashScript)}, Input: in})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	fmt.Println("child finished:", out.Status)
	return 0
}

// payments is a payment API that charges once per Idempotency-Key and can
// hang a path's first request to let the test kill the caller.
type payments struct {
	mu       sync.Mutex
	requests map[string][]string // path -> idempotency keys, one per request
	charged  map[string]string   // key -> charge id
	hang     map[string]chan struct{}
}

func (p *payments) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	key := r.Header.Get("Idempotency-Key")
	p.mu.Lock()
	p.requests[r.URL.Path] = append(p.requests[r.URL.Path], key)
	first := len(p.requests[r.URL.Path]) == 1
	hang := p.hang[r.URL.Path]
	p.mu.Unlock()
	if first && hang != nil {
		close(hang) // tell the test to kill the caller
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return
	}
	if r.Method != nethttp.MethodPost {
		return
	}
	p.mu.Lock()
	id, seen := p.charged[key]
	if !seen {
		id = fmt.Sprintf("ch_%d", len(p.charged)+1)
		p.charged[key] = id
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id": %q, "replayed": %v}`, id, seen)
}

func TestKilledRunResumesSendingEachPostOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	pay := &payments{requests: map[string][]string{}, charged: map[string]string{},
		hang: map[string]chan struct{}{"/gate": make(chan struct{}), "/c": make(chan struct{})}}
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) { pay.ServeHTTP(w, r) })
	dir := t.TempDir()

	runChildUntil := func(hang chan struct{}) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashStoreEnv+"="+dir, crashURLEnv+"="+srv.URL)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-hang:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the child never reached the hanging request; its output:\n%s", out.String())
		}
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("child was not killed (err %v); output:\n%s", err, out.String())
		}
	}

	runChildUntil(pay.hang["/gate"]) // killed after POST /a, before POST /b
	runChildUntil(pay.hang["/c"])    // killed with POST /c in flight

	store, rt, err := crashRuntime(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	out, err := rt.Resume(bg, crashRunID)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != journal.StatusCompleted {
		t.Fatalf("status %s, error %+v", out.Status, out.Error)
	}
	var res map[string]map[string]any
	if err := json.Unmarshal(out.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res["a"]["id"] != "ch_1" || res["b"]["id"] != "ch_2" || res["c"]["id"] != "ch_3" {
		t.Fatalf("result %s", out.Result)
	}
	// The replay executed only the call that was in flight.
	if out.Stats.Replayed != 3 || out.Stats.Executed != 1 {
		t.Fatalf("stats %+v", out.Stats)
	}

	pay.mu.Lock()
	defer pay.mu.Unlock()
	want := map[string]string{
		"/a":    "[crash/1]",         // completed before the first kill: sent once
		"/gate": "[ ]",               // in flight at the first kill: sent again
		"/b":    "[crash/3]",         // completed before the second kill: sent once
		"/c":    "[crash/4 crash/4]", // in flight at the second kill: sent again with the same key
	}
	for path, w := range want {
		if got := fmt.Sprint(pay.requests[path]); got != w {
			t.Errorf("%s: requests with keys %s, want %s", path, got, w)
		}
	}
	if len(pay.charged) != 3 {
		t.Errorf("%d charges, want 3: %v", len(pay.charged), pay.charged)
	}
}
