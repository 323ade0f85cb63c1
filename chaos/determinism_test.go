package chaos_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/starflow/starflow/builtins/llm"
	"github.com/starflow/starflow/builtins/llm/llmtest"
	"github.com/starflow/starflow/chaos"
)

const scenarioProfile = `
seed: 42
rules:
  - {builtin: http, fault: 503, rate: 0.25}
  - {builtin: http, method: POST, fault: reset, after_send: true, rate: 0.2}
  - {builtin: http, fault: latency, delay: 1ms..4ms, rate: 0.3}
  - {builtin: http, fault: timeout, hang: 5ms, rate: 0.08}
  - {builtin: llm, fault: reset, rate: 0.15}
  - {provider: openai, fault: 429, retry_after: 5ms, rate: 0.3}
  - {provider: fake, fault: 529, rate: 0.3}
  - {builtin: llm, fault: slow_body, bytes: 64, every: 1ms, rate: 0.2}
`

const scenarioScript = `
def main(input):
    out = []
    for i in range(12):
        r = attempt(http.get, input["a"] + "/items/" + str(i), timeout = "500ms")
        out.append(r.ok)
    for i in range(12):
        r = attempt(http.post, input["b"] + "/charges", json = {"n": i}, timeout = "500ms")
        out.append(r.ok)
    for i in range(8):
        r = attempt(llm, "question %d" % i)
        out.append(r.ok)
        r = attempt(llm, "question %d" % i, model = "sim")
        out.append(r.ok)
    return {"ok": out}
`

// The same seed and the same requests give the same faults at the same
// places, whatever runs beside them on other targets; and the builtins,
// facing the same faults, retry and fail over the same way. Another seed
// gives another sequence.
func TestSameSeedSameFaultSequence(t *testing.T) {
	a := newOrigin(t, `{"item": true}`)
	b := newOrigin(t, `{"charged": true}`)
	c := newOrigin(t, `{"noise": true}`)
	oa := llmtest.New(t, llmtest.OpenAI, "openai", "")
	hosts := map[string]string{"a.test:80": hostOf(a.URL), "b.test:80": hostOf(b.URL), "openai.test:80": hostOf(oa.URL())}
	cfg, err := llm.ParseConfig("t.yaml", []byte(fmt.Sprintf(`
providers:
  openai: {type: openai, base_url: %s}
  sim: {type: fake}
models:
  default:
    retry: {initial: 10ms, jitter: 0}
    deployments: [{provider: openai, model: gpt-test}]
  sim:
    retry: {initial: 10ms, jitter: 0}
    deployments: [{provider: sim, model: fake}]
`, "http://openai.test/v1")))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := chaos.ParseProfile("scenario.yaml", []byte(scenarioProfile))
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{"a": "http://a.test", "b": "http://b.test"}

	type outcome struct {
		events []chaos.Event
		seq    []string
		result map[string]any
		tally  chaos.Tally
		fp     string
	}
	run := func(p *chaos.Profile, noise bool) outcome {
		h := newHarness(t, p, setup{llm: cfg, hosts: hosts})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		if noise {
			// Traffic to another target through the same injector, at the
			// same time: it must not move the scenario's faults.
			client := &http.Client{Transport: h.inj.HTTPTransport(nil)}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if resp, err := client.Get(c.URL); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
		}
		res := h.result(scenarioScript, in)
		close(stop)
		wg.Wait()
		var evs []chaos.Event
		for _, e := range h.inj.Events() {
			if !strings.Contains(e.Target, hostOf(c.URL)) {
				evs = append(evs, e)
			}
		}
		return outcome{events: evs, seq: chaos.Sequence(evs), result: res, tally: h.tally("run-1"), fp: chaos.Fingerprint(evs)}
	}

	first := run(prof, false)
	second := run(prof, true)
	if d := chaos.Diff(first.events, second.events); d != "" || first.fp != second.fp {
		t.Fatalf("same seed, different faults: %s\nfirst:\n%s\nsecond:\n%s", d, strings.Join(first.seq, "\n"), strings.Join(second.seq, "\n"))
	}
	if !reflect.DeepEqual(first.result, second.result) || !reflect.DeepEqual(first.tally, second.tally) {
		t.Fatalf("same faults, different handling:\n%v %+v\n%v %+v", first.result, first.tally, second.result, second.tally)
	}
	// The scenario exercised every rule, and the builtins coped with it.
	all := strings.Join(first.seq, "\n")
	for _, want := range []string{`http/a.test #\d+ 503`, `http/b.test #\d+ reset after_send`, `http/a.test #\d+ latency \S+`, `http/.\.test #\d+ timeout hang=5ms`,
		`llm/openai@openai.test #\d+ 429 retry_after=5ms`, `llm/openai@openai.test #\d+ reset`, `llm/sim #\d+ 529`, `llm/.* slow_body 64B/1ms`} {
		if !regexp.MustCompile("(?m)^" + want + "$").MatchString(all) {
			t.Errorf("no fault like %q in the sequence:\n%s", want, all)
		}
	}
	if first.tally.HTTPRetries == 0 || first.tally.LLMRetries == 0 || first.tally.HTTPCalls != 24 || first.tally.LLMCalls != 16 {
		t.Errorf("tally %+v", first.tally)
	}
	t.Logf("%d faults; tally:\n%s", len(first.seq), first.tally)

	third := run(prof.WithSeed(43), false)
	if chaos.Diff(first.events, third.events) == "" || first.fp == third.fp {
		t.Fatalf("seeds 42 and 43 gave the same faults:\n%s", all)
	}
}

// A target's stream depends on the seed, the target and the request's
// position on it, not on traffic to other targets.
func TestTargetStreamsAreIndependent(t *testing.T) {
	srv := [3]*origin{newOrigin(t, "a"), newOrigin(t, "b"), newOrigin(t, "c")}
	p := inline(t, "http:503@0.4,http:reset@0.1,http:latency=1ms..2ms@0.2", 7)
	drive := func(inj *chaos.Injector, url string, n int) {
		client := &http.Client{Transport: inj.HTTPTransport(nil)}
		for i := 0; i < n; i++ {
			if resp, err := client.Get(url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	alone := chaos.New(p)
	drive(alone, srv[0].URL, 60)

	together := chaos.New(p)
	var wg sync.WaitGroup
	for _, s := range srv {
		wg.Add(1)
		go func() { defer wg.Done(); drive(together, s.URL, 60) }()
	}
	wg.Wait()
	target := "http/" + strings.TrimPrefix(srv[0].URL, "http://")
	var mine []chaos.Event
	for _, e := range together.Events() {
		if e.Target == target {
			mine = append(mine, e)
		}
	}
	if d := chaos.Diff(alone.Events(), mine); d != "" {
		t.Fatalf("the target's faults changed with traffic beside it: %s", d)
	}
	if len(mine) < 20 {
		t.Fatalf("only %d faults in 60 requests at these rates", len(mine))
	}
	s := together.Summary()
	if s.Requests != 180 || len(s.Targets) != 3 {
		t.Fatalf("summary %+v", s)
	}
	if !strings.Contains(s.String(), target) || !strings.Contains(s.String(), "fingerprint "+s.Fingerprint) {
		t.Fatalf("summary text:\n%s", s)
	}
}

// Rates hold over many requests, max caps a rule per target, and a
// status the client sees matches the event log one for one.
func TestRatesAndMax(t *testing.T) {
	srv := newOrigin(t, "ok")
	var seen []chaos.Event
	count := func(spec string, n int) (map[int]int, *chaos.Injector) {
		inj := chaos.New(inline(t, spec, 11))
		seen = nil
		inj.OnFault(func(e chaos.Event) { seen = append(seen, e) })
		client := &http.Client{Transport: inj.HTTPTransport(nil)}
		got := map[int]int{}
		for i := 0; i < n; i++ {
			resp, err := client.Get(srv.URL)
			if err != nil {
				got[-1]++
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got[resp.StatusCode]++
		}
		return got, inj
	}
	got, inj := count("http:503@0.3", 1000)
	if got[503] < 250 || got[503] > 350 || got[503]+got[200] != 1000 {
		t.Fatalf("rate 0.3 over 1000 requests: %v", got)
	}
	if s := inj.Summary(); s.Faults["503"] != got[503] || len(inj.Events()) != got[503] {
		t.Fatalf("the client saw %d 503s, the summary says %v", got[503], s.Faults)
	}
	if got, _ = count("http:503@0", 100); got[200] != 100 {
		t.Fatalf("rate 0: %v", got)
	}
	got, inj = count("http:503#3,http:reset@1#2", 10)
	if got[503] != 3 || got[-1] != 2 || got[200] != 5 {
		t.Fatalf("max 3 and max 2: %v", got)
	}
	ev := inj.Events()
	if !reflect.DeepEqual(ev, seen) {
		t.Fatalf("OnFault saw %+v, the log has %+v", seen, ev)
	}
	if len(ev) != 5 || ev[0].N != 1 || ev[2].N != 3 || ev[3].N != 4 || ev[3].Fault != chaos.Reset || ev[4].N != 5 {
		t.Fatalf("events %+v: want 503 on requests 1-3, resets on 4-5", ev)
	}
}

// An injected response is one the client can read like any other: the
// status line, headers and a body that matches Content-Length.
func TestInjectedResponsesAreWellFormed(t *testing.T) {
	for _, fl := range []llmtest.Flavor{llmtest.OpenAI, llmtest.Anthropic, llmtest.Gemini, llmtest.Azure} {
		srv := llmtest.New(t, fl, "p", "")
		for _, status := range chaos.Statuses {
			spec := fmt.Sprintf("llm:%d", status)
			if status == 429 || status == 503 || status == 529 {
				spec += "=2500ms"
			}
			inj := chaos.New(inline(t, spec, 1))
			client := inj.LLMClient(nil)
			path := map[llmtest.Flavor]string{llmtest.OpenAI: "/chat/completions", llmtest.Anthropic: "/v1/messages",
				llmtest.Gemini: "/v1beta/models/gemini-x:generateContent", llmtest.Azure: "/openai/deployments/dep/chat/completions?api-version=2024-10-21"}[fl]
			req, _ := http.NewRequest("POST", srv.URL()+path, strings.NewReader(`{"model": "gpt-x"}`))
			if fl == llmtest.Anthropic {
				req.Header.Set("anthropic-version", "2023-06-01")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || int64(len(body)) != resp.ContentLength || resp.Header.Get("X-Starflow-Chaos") == "" {
				t.Fatalf("%s %d: body %d bytes, Content-Length %d, err %v", fl, status, len(body), resp.ContentLength, err)
			}
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && !json.Valid(body) {
				t.Fatalf("%s %d: invalid JSON %s", fl, status, body)
			}
			if status == 429 {
				switch fl {
				case llmtest.Gemini:
					if resp.Header.Get("Retry-After") != "" || !strings.Contains(string(body), `"retryDelay":"2.500s"`) {
						t.Fatalf("gemini 429: headers %v body %s", resp.Header, body)
					}
				case llmtest.Anthropic:
					if resp.Header.Get("Retry-After") != "3" || resp.Header.Get("Retry-After-Ms") != "" {
						t.Fatalf("anthropic 429: headers %v", resp.Header)
					}
				default:
					if resp.Header.Get("Retry-After") != "3" || resp.Header.Get("Retry-After-Ms") != "2500" {
						t.Fatalf("%s 429: headers %v", fl, resp.Header)
					}
				}
			}
			if fl == llmtest.OpenAI && status == 429 && !strings.Contains(string(body), "Rate limit reached for gpt-x") {
				t.Fatalf("openai 429 body %s: want the model named", body)
			}
		}
		if srv.Calls() != 0 {
			t.Fatalf("%s: the server received %d requests", fl, srv.Calls())
		}
	}
}

func hostOf(url string) string {
	url = strings.TrimPrefix(url, "http://")
	h, _, _ := strings.Cut(url, "/")
	return h
}

// A nil profile gives a nil Injector, which injects nothing and hands back
// what it is given, so that commands can wire it in unconditionally.
func TestNilInjector(t *testing.T) {
	inj := chaos.New(nil)
	if inj != nil {
		t.Fatal("New(nil) is not nil")
	}
	base := answer{}
	if rt := inj.HTTPTransport(base); rt != (answer{}) {
		t.Fatalf("HTTPTransport = %T", rt)
	}
	if c := inj.LLMClient(nil); c != nil {
		t.Fatalf("LLMClient(nil) = %v", c)
	}
	inj.OnFault(func(chaos.Event) {})
	if inj.Events() != nil || inj.Summary().Requests != 0 || inj.Profile() != nil {
		t.Fatal("a nil injector reports something")
	}
}
