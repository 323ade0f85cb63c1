package chaos_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/chaos"
)

func TestParseProfile(t *testing.T) {
	p, err := chaos.ParseProfile("p.yaml", []byte(`# a comment
version: 1
seed: 42
rules:
  - name: openai throttles
    provider: openai
    fault: 429
    retry_after: 250ms
    rate: 0.2
    max: 3
  - builtin: http
    host: "*.example.com"
    method: post
    path: /v1/
    fault: reset
    after_send: true
    rate: 0.1
  - fault: latency
    delay: 100ms..300ms
    rate: 0.5
  - fault: slow_body
  - builtin: llm
    fault: timeout
    hang: 2s
  - {provider: anthropic, fault: "529"}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []chaos.Rule{
		{Name: "openai throttles", Line: 5, Builtin: "llm", Provider: "openai", Fault: chaos.Status, Status: 429, RetryAfter: 250 * time.Millisecond, Rate: 0.2, Max: 3},
		{Line: 11, Builtin: "http", Host: "*.example.com", Method: "POST", Path: "/v1/", Fault: chaos.Reset, AfterSend: true, Rate: 0.1},
		{Line: 18, Fault: chaos.Latency, Delay: 100 * time.Millisecond, DelayMax: 300 * time.Millisecond, Rate: 0.5},
		{Line: 21, Fault: chaos.SlowBody, Bytes: chaos.DefaultBytes, Every: chaos.DefaultEvery, Rate: 1},
		{Line: 22, Builtin: "llm", Fault: chaos.Timeout, Hang: 2 * time.Second, Rate: 1},
		{Line: 25, Builtin: "llm", Provider: "anthropic", Fault: chaos.Status, Status: 529, Rate: 1},
	}
	if p.Name != "p.yaml" || p.Seed != 42 || !p.HasSeed {
		t.Fatalf("profile %q seed %d (set %v)", p.Name, p.Seed, p.HasSeed)
	}
	if !reflect.DeepEqual(p.Rules, want) {
		t.Fatalf("rules\n got %+v\nwant %+v", p.Rules, want)
	}
	// A 429 without retry_after asks for the default wait.
	p, err = chaos.ParseProfile("q.yaml", []byte("rules:\n  - fault: 429\n"))
	if err != nil || p.Rules[0].RetryAfter != chaos.DefaultRetryAfter || p.HasSeed {
		t.Fatalf("%+v %v", p, err)
	}
}

// Every problem is reported with the line it is on.
func TestParseProfileErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"rate", "seed: 1\nrules:\n  - fault: 503\n    rate: 1.5\n", []string{"x.yaml:4: rules[0]: rate 1.5 is not between 0 and 1"}},
		{"status", "rules:\n  - builtin: http\n    fault: 418\n", []string{"x.yaml:3: rules[0]: status 418 cannot be injected"}},
		{"unknown fault", "rules:\n  - fault: explode\n", []string{`x.yaml:2: rules[0]: fault: "explode" is not a fault`}},
		{"unknown field", "rules:\n  - fault: reset\n    colour: red\n", []string{"x.yaml:3: rules[0]: colour: unknown field"}},
		{"no fault", "rules:\n  - builtin: http\n    rate: 0.5\n", []string{"x.yaml:2: rules[0]: no fault"}},
		{"provider on http", "rules:\n  - builtin: http\n    provider: openai\n    fault: 503\n", []string{"x.yaml:3: rules[0]: provider \"openai\" selects llm requests, but builtin is http"}},
		{"bad duration", "rules:\n  - fault: latency\n    delay: soon\n", []string{`x.yaml:3: rules[0]: delay: "soon" is not a duration`}},
		{"backwards range", "rules:\n  - fault: latency\n    delay: 2s..1s\n", []string{"x.yaml:3: rules[0]: delay range 2s..1s runs backwards"}},
		{"retry_after on 500", "rules:\n  - fault: 500\n    retry_after: 1s\n", []string{"x.yaml:3: rules[0]: retry_after applies to faults 429, 503 and 529"}},
		{"after_send on latency", "rules:\n  - fault: latency\n    delay: 1s\n    after_send: true\n", []string{"x.yaml:4: rules[0]: after_send applies"}},
		{"bad host", "rules:\n  - host: a/b\n    fault: reset\n", []string{`x.yaml:2: rules[0]: host "a/b"`}},
		{"seed", "seed: lots\nrules:\n  - fault: reset\n", []string{`x.yaml:1: seed "lots": want an integer`}},
		{"version", "version: 2\nrules:\n  - fault: reset\n", []string{"x.yaml:1: version 2"}},
		{"no rules", "seed: 3\n", []string{"x.yaml:1: no rules"}},
		{"empty", "", []string{"x.yaml: the profile is empty"}},
		{"syntax", "rules:\n  - fault: [reset\n", []string{"x.yaml:2:"}},
		{"several", "rules:\n  - fault: 503\n    rate: 2\n  - fault: 999\n", []string{"x.yaml:3: rules[0]: rate 2", "x.yaml:4: rules[1]: status 999"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chaos.ParseProfile("x.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q\nwant it to contain %q", err, w)
				}
			}
			var pe *chaos.ProfileError
			if !errors.As(err, &pe) || pe.File != "x.yaml" {
				t.Fatalf("error %v is not a *ProfileError for x.yaml", err)
			}
		})
	}
}

// A profile can sit under a chaos: key of a larger configuration, as a
// mapping or in the inline form.
func TestParseProfileChaosSection(t *testing.T) {
	p, err := chaos.ParseProfile("cfg.yaml", []byte("other: stuff\nchaos:\n  seed: 9\n  rules:\n    - fault: 503\n      rate: 0.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Seed != 9 || len(p.Rules) != 1 || p.Rules[0].Status != 503 || p.Rules[0].Line != 5 {
		t.Fatalf("%+v", p)
	}
	p, err = chaos.ParseProfile("cfg.yaml", []byte("chaos: \"llm:503@0.5,http:reset\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 2 || p.HasSeed || p.Name != "cfg.yaml" {
		t.Fatalf("%+v", p)
	}
	_, err = chaos.ParseProfile("cfg.yaml", []byte("x: 1\nchaos: \"llm:418\"\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "cfg.yaml:2: ") {
		t.Fatalf("error %v, want one at cfg.yaml:2", err)
	}
}

func TestExampleProfilesParse(t *testing.T) {
	files, _ := filepath.Glob("../scripts/chaos/*.yaml")
	if len(files) < 2 {
		t.Fatalf("example profiles: %v", files)
	}
	for _, f := range files {
		p, err := chaos.LoadProfile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !p.HasSeed || len(p.Rules) == 0 {
			t.Fatalf("%s: %+v", f, p)
		}
		q, err := chaos.Load(f)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("Load(%s) = %+v, %v", f, q, err)
		}
	}
}

func TestParseInline(t *testing.T) {
	p, err := chaos.ParseInline("llm[openai]:429=2s@0.3, llm[anthropic]:529@0.1#2,http:reset+after_send@0.1,http[POST *.example.com /v1/]:latency=50ms..200ms@0.5,"+
		"*:slow_body=32/10ms,llm[127.0.0.1:8080]:timeout=1s,http[127.0.0.1:9000]:503=1500ms", 42)
	if err != nil {
		t.Fatal(err)
	}
	want := []chaos.Rule{
		{Builtin: "llm", Provider: "openai", Fault: chaos.Status, Status: 429, RetryAfter: 2 * time.Second, Rate: 0.3},
		{Builtin: "llm", Provider: "anthropic", Fault: chaos.Status, Status: 529, Rate: 0.1, Max: 2},
		{Builtin: "http", Fault: chaos.Reset, AfterSend: true, Rate: 0.1},
		{Builtin: "http", Method: "POST", Host: "*.example.com", Path: "/v1/", Fault: chaos.Latency, Delay: 50 * time.Millisecond, DelayMax: 200 * time.Millisecond, Rate: 0.5},
		{Fault: chaos.SlowBody, Bytes: 32, Every: 10 * time.Millisecond, Rate: 1},
		{Builtin: "llm", Host: "127.0.0.1:8080", Fault: chaos.Timeout, Hang: time.Second, Rate: 1},
		{Builtin: "http", Host: "127.0.0.1:9000", Fault: chaos.Status, Status: 503, RetryAfter: 1500 * time.Millisecond, Rate: 1},
	}
	if p.Seed != 42 || !p.HasSeed || len(p.Rules) != len(want) {
		t.Fatalf("%+v", p)
	}
	for i := range want {
		got := p.Rules[i]
		if got.Name == "" {
			t.Fatalf("rule %d has no name", i)
		}
		got.Name = ""
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("rule %d\n got %+v\nwant %+v", i, got, want[i])
		}
		// String is the inline form, and reads back to the same rule.
		back, err := chaos.ParseInline(got.String(), 0)
		if err != nil {
			t.Fatalf("rule %d: %s: %v", i, got.String(), err)
		}
		back.Rules[0].Name = ""
		if !reflect.DeepEqual(back.Rules[0], want[i]) {
			t.Fatalf("rule %d: %s reads back as %+v", i, got.String(), back.Rules[0])
		}
	}
	q, err := chaos.Load("llm:503@0.5")
	if err != nil || q.HasSeed || len(q.Rules) != 1 {
		t.Fatalf("Load inline: %+v %v", q, err)
	}
	if q = q.WithSeed(5); q.Seed != 5 || !q.HasSeed {
		t.Fatalf("WithSeed: %+v", q)
	}
}

func TestParseInlineErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                                 "no rules",
		"llm":                              "want TARGET:FAULT",
		"ftp:503":                          `target "ftp"`,
		"llm:418":                          "status 418 cannot be injected",
		"http:503@x":                       "the rate is a number",
		"http:503@1.5":                     "rate 1.5 is not between 0 and 1",
		"http:reset=1s":                    "reset takes no parameter",
		"http:latency":                     "needs a positive delay",
		"http:slow_body=fast":              "want BYTES/EVERY",
		"http:503+later":                   "the only flag is +after_send",
		"http[POST]:latency=1s+after_send": "after_send applies",
		"llm[openai]:503,,http:reset":      "chaos rule 2: empty",
		"http[openai]:503":                 "", // a host named openai: fine
		"llm[/v1/]:503":                    "method and path select http requests",
		"http:503#x":                       "the maximum is a count",
		"http[a b c]:503":                  "two hosts",
	} {
		_, err := chaos.ParseInline(spec, 1)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", spec, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", spec, err, want)
		}
	}
}
