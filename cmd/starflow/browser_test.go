package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/server"
)

// chromium returns the browser the browser tests drive. They fail, not
// skip, when it is missing: set STARFLOW_SKIP_BROWSER_TESTS=1 to skip them.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("STARFLOW_SKIP_BROWSER_TESTS") == "1" {
		t.Skip("STARFLOW_SKIP_BROWSER_TESTS=1")
	}
	path := os.Getenv("STARFLOW_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
		if p, err := exec.LookPath("chromium"); err == nil {
			path = p
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("this test drives a real browser and needs Chromium at %s (%v): install it with `apt-get install -y chromium`, or set STARFLOW_CHROMIUM to its path; STARFLOW_SKIP_BROWSER_TESTS=1 skips the browser tests", path, err)
	}
	return path
}

// browser starts a headless Chromium with a fresh profile. rebind.test
// resolves to 127.0.0.1, as an attacker's name does after DNS rebinding.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("host-resolver-rules", "MAP rebind.test 127.0.0.1"),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	// A bound on a hung browser, not an assertion about time.
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// evaluate runs JavaScript in the page and waits for its promise.
func evaluate(t *testing.T, ctx context.Context, js string) string {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	return out
}

// A real browser attack on a loopback `starflow serve` with no token (and,
// to show that the web defences alone stop it, with code allowed in
// requests and the canary declared as a secret):
//
//  1. A page from another loopback origin (another port) posts a run that
//     sends the secret to the attacker, with fetch(url, {mode: "no-cors",
//     body: new Blob([json])}): a "simple" request the browser sends
//     without a preflight. The server refuses it (the page's Origin is
//     not the server's); no run is created and the receiver hears nothing.
//  2. A page under an attacker's name that resolves to 127.0.0.1 (DNS
//     rebinding: the page and the API share its origin, so the page could
//     read the answers) lists the runs. The server refuses the Host; the
//     page reads no run.
func TestBrowserCannotDriveLoopbackServer(t *testing.T) {
	ctx := browser(t)
	rcv := newReceiver(t)
	srv := startServeProcess(t, []string{"CANARY=canary-XYZ"}, "--allow-inline-source", "--secret", "CANARY")
	_, apiPort, _ := net.SplitHostPort(srv.addr)

	// A run with a result a page would like to read.
	os.WriteFile(filepath.Join(srv.dir, "private.star"), []byte("def main(input):\n    return 'private-result'\n"), 0o644)
	if r, err := srv.client.Start(context.Background(), server.StartRequest{ID: "private", Script: "private.star", Wait: "1m"}); err != nil || r.Status != journal.StatusCompleted {
		t.Fatalf("legitimate run: %+v %v", r, err)
	}

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>cat pictures</title><p>nothing to see")
	}))
	defer page.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL+"/")); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"id": "csrf1", "source": exfil(rcv.URL)})
	sent := evaluate(t, ctx, fmt.Sprintf(`fetch("http://127.0.0.1:%s/v1/runs", {method: "POST", mode: "no-cors", body: new Blob([%q])}).then(r => "sent: " + r.type, e => "failed: " + e)`, apiPort, body))
	// The answer is opaque to the page whatever it is; the request went out.
	if sent != "sent: opaque" {
		t.Fatalf("the page's fetch: %s", sent)
	}
	if !strings.Contains(srv.log.String(), `"origin":"`+page.URL+`"`) || !strings.Contains(srv.log.String(), `"code":"forbidden_origin"`) {
		t.Fatalf("the server did not refuse the page's request:\n%s", srv.log.String())
	}
	if r, err := srv.client.Get(context.Background(), "csrf1"); err == nil {
		t.Fatalf("the page started a run: %s %s", r.Status, r.Result)
	}
	if got := rcv.got(); len(got) != 0 {
		t.Fatalf("the receiver got %q", got)
	}

	// DNS rebinding: a page at http://rebind.test:PORT, same origin as the
	// API under that name.
	origin := "http://rebind.test:" + apiPort
	if err := chromedp.Do(ctx, chromedp.Navigate(origin+"/")); err != nil {
		t.Fatal(err)
	}
	read := evaluate(t, ctx, `fetch("/v1/runs").then(async r => r.status + " " + await r.text(), e => "failed: " + e)`)
	if !strings.HasPrefix(read, "421 ") || strings.Contains(read, "private") || !strings.Contains(read, "misdirected_host") {
		t.Fatalf("the rebound page read: %s", read)
	}
	post := evaluate(t, ctx, fmt.Sprintf(`fetch("/v1/runs", {method: "POST", headers: {"Content-Type": "application/json"}, body: %q}).then(async r => r.status + " " + await r.text(), e => "failed: " + e)`, body))
	if !strings.HasPrefix(post, "421 ") {
		t.Fatalf("the rebound page's start: %s", post)
	}
	runs, err := srv.client.List(context.Background(), nil, 0)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v %v", runs, err)
	}
	if got := rcv.got(); len(got) != 0 {
		t.Fatalf("the receiver got %q", got)
	}
}
