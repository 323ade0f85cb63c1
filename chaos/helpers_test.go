package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/starflow/starflow/internal/runtest"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/builtins"
	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/chaos"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

// fast keeps the http builtin's retries quick.
var fast = runtime.RetryPolicy{InitialInterval: 5 * time.Millisecond, Jitter: -1}

type logBuffer = runtest.LogBuffer

// harness is a runtime over a real Badger store with the http and llm
// builtins, both wired to one chaos Injector the way the CLI wires them.
type harness struct {
	t     testing.TB
	dir   string
	store *badgerstore.Store
	rt    *runtime.Runtime
	inj   *chaos.Injector
	logs  *logBuffer
	n     int
}

// setup adjusts the modules' options before they are built.
type setup struct {
	http func(*sfhttp.Options)
	llm  *llm.Config
	// hosts maps host names used in URLs ("a.test:80") to loopback
	// listeners, so that targets, and with them fault sequences, do not
	// depend on the ports the test servers got.
	hosts map[string]string
}

// dialer returns a transport that connects to hosts[addr] instead of addr.
func dialer(hosts map[string]string) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := hosts[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, network, addr)
	}
	return t
}

func newHarness(t testing.TB, p *chaos.Profile, s setup) *harness {
	t.Helper()
	h := &harness{t: t, logs: &logBuffer{}, inj: chaos.New(p)}
	h.dir = t.TempDir()
	store, err := badgerstore.Open(h.dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.store = store
	t.Cleanup(func() { store.Close() })
	log := zerolog.New(h.logs)

	hopts := sfhttp.Options{Retry: fast, Timeout: 2 * time.Second, WrapTransport: h.inj.HTTPTransport}
	if s.hosts != nil {
		hopts.Transport = dialer(s.hosts)
	}
	if s.http != nil {
		s.http(&hopts)
	}
	hm, err := sfhttp.New(hopts)
	if err != nil {
		t.Fatal(err)
	}
	bs := append(builtins.Standard(), hm.Builtins()...)
	if s.llm != nil {
		var base *http.Client
		if s.hosts != nil {
			base = &http.Client{Transport: dialer(s.hosts)}
		}
		lm, err := llm.New(llm.Options{Config: s.llm, KV: store, Logger: log, Secrets: secrets,
			HTTPClient: h.inj.LLMClient(base), WrapProvider: h.inj.WrapLLMProvider})
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, lm.Builtins()...)
	}
	g := builtins.Globals()
	for k, v := range hm.Globals() {
		g[k] = v
	}
	h.rt, err = runtime.New(store, runtime.Options{Builtins: bs, Globals: g, Logger: log, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var testSecrets = map[string]string{
	"OPENAI_API_KEY":       "sk-chaos-openai-KEY-5b1e0c9d8a7f6e5d",
	"ANTHROPIC_API_KEY":    "sk-ant-chaos-KEY-3c2b1a0f9e8d7c6b",
	"GEMINI_API_KEY":       "AIzaChaosGeminiKEY-z9y8x7w6v5u4t3s2r1",
	"AZURE_OPENAI_API_KEY": "azure-chaos-KEY-2718281828459045",
	"API_TOKEN":            "tok-chaos-7e6d5c4b3a29-SECRETVALUE",
}

func secrets(name string) (string, error) {
	if v, ok := testSecrets[name]; ok {
		return v, nil
	}
	return "", fmt.Errorf("environment variable %s is not set", name)
}

// run starts a run of src and returns its outcome.
func (h *harness) run(src string, input any) *runtime.Outcome {
	h.t.Helper()
	h.n++
	in, err := json.Marshal(input)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := h.rt.Start(bg, runtime.StartRequest{ID: fmt.Sprintf("run-%d", h.n), Script: "wf.star",
		Sources: map[string][]byte{"wf.star": []byte(src)}, Input: in})
	if err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	return out
}

// result runs src and returns main's result, which must be a dict.
func (h *harness) result(src string, input any) map[string]any {
	h.t.Helper()
	out := h.run(src, input)
	if out.Status != journal.StatusCompleted {
		h.t.Fatalf("run %s: status %s, error %+v\nlogs:\n%s", out.ID, out.Status, out.Error, h.logs)
	}
	return runtest.ResultObject(h.t, out)
}

// details returns the journal details of a run's completed calls, in order.
func (h *harness) details(id string) []map[string]any {
	h.t.Helper()
	return runtest.Details(h.t, h.store, id)
}

// tally counts a run's retries, fallbacks and degraded answers.
func (h *harness) tally(ids ...string) chaos.Tally {
	h.t.Helper()
	var t chaos.Tally
	for _, id := range ids {
		recs, err := h.store.Records(bg, id, 1)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := t.AddRecords(recs); err != nil {
			h.t.Fatal(err)
		}
	}
	return t
}

func attempts(d map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := d["attempts"].([]any)
	for _, a := range list {
		m, _ := a.(map[string]any)
		out = append(out, m)
	}
	return out
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// origin is a loopback HTTP server that answers every request with a JSON
// body and records what it received.
type origin struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body string
}

func newOrigin(t testing.TB, body string) *origin {
	t.Helper()
	o := &origin{body: body}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		o.mu.Lock()
		o.reqs = append(o.reqs, r.Clone(context.Background()))
		o.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, o.body)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) requests() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.reqs...)
}

// inline parses an inline profile or fails the test.
func inline(t testing.TB, spec string, seed int64) *chaos.Profile {
	t.Helper()
	p, err := chaos.ParseInline(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
