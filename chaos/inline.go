package chaos

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseInline parses the compact form of the --chaos flag: rules separated
// by commas, each
//
//	TARGET:FAULT[=PARAM][+after_send][@RATE][#MAX]
//
// where TARGET is http, llm or * (both), optionally followed by selectors
// in brackets, separated by spaces: a method (POST), a path prefix (/v1/),
// a host (api.example.com, *.example.com, 127.0.0.1:8080) or, for llm, a
// provider (a word without dots or colons: openai, anthropic, my-azure).
// FAULT is 429, 500, 502, 503, 504, 529, timeout, reset, latency or
// slow_body; PARAM is the 429/503/529 retry-after (2s), the timeout's hang
// (5s), the latency (200ms, or 100ms..400ms) or the slow body's BYTES/EVERY
// (64/100ms). RATE defaults to 1. For example:
//
//	llm[openai]:429=2s@0.3,llm[anthropic]:529@0.1,http:reset@0.1,http[*.example.com]:latency=50ms..200ms@0.5
//
// The grammar is in spec/chaos.md. Errors name the rule by its position.
func ParseInline(spec string, seed int64) (*Profile, error) {
	p := &Profile{Name: "inline", Seed: seed, HasSeed: true}
	var errs []error
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			if strings.TrimSpace(spec) == "" {
				break
			}
			errs = append(errs, fmt.Errorf("chaos rule %d: empty (two commas in a row?)", i+1))
			continue
		}
		r, err := parseInlineRule(part)
		if err != nil {
			errs = append(errs, fmt.Errorf("chaos rule %d %q: %w", i+1, part, err))
			continue
		}
		p.Rules = append(p.Rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(p.Rules) == 0 {
		return nil, fmt.Errorf("chaos: no rules in %q (want e.g. llm:503@0.3,http:reset@0.1)", spec)
	}
	return p, nil
}

func parseInlineRule(s string) (Rule, error) {
	r := Rule{Name: s, Rate: 1}
	rest := s
	if i := strings.LastIndexByte(rest, '#'); i >= 0 {
		m, err := strconv.Atoi(rest[i+1:])
		if err != nil || m < 0 {
			return r, fmt.Errorf("#%s: the maximum is a count (#3)", rest[i+1:])
		}
		r.Max, rest = m, rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		f, err := strconv.ParseFloat(rest[i+1:], 64)
		if err != nil {
			return r, fmt.Errorf("@%s: the rate is a number from 0 to 1 (@0.25)", rest[i+1:])
		}
		r.Rate, rest = f, rest[:i]
	}
	// The target: a builtin and optional [selectors].
	var target, fault string
	if i := strings.IndexByte(rest, '['); i >= 0 && i < strings.IndexByte(rest+":", ':') {
		j := strings.IndexByte(rest, ']')
		if j < i {
			return r, fmt.Errorf("unclosed [ in the target")
		}
		target = rest[:j+1]
		after, ok := strings.CutPrefix(rest[j+1:], ":")
		if !ok {
			return r, fmt.Errorf("want TARGET:FAULT, e.g. http[api.example.com]:503")
		}
		fault = after
	} else {
		var ok bool
		target, fault, ok = strings.Cut(rest, ":")
		if !ok {
			return r, fmt.Errorf("want TARGET:FAULT, e.g. llm:503 or http:reset")
		}
	}
	if err := r.setTarget(target); err != nil {
		return r, err
	}
	// The fault, its parameter and flags.
	parts := strings.Split(fault, "+")
	name, param, hasParam := strings.Cut(parts[0], "=")
	flags := parts[1:]
	for _, f := range flags {
		if f != "after_send" {
			return r, fmt.Errorf("+%s: the only flag is +after_send", f)
		}
		r.AfterSend = true
	}
	if err := r.setFault(name); err != nil {
		return r, err
	}
	if hasParam {
		if err := r.setParam(param); err != nil {
			return r, err
		}
	}
	if err := r.validate(); err != nil {
		return r, err
	}
	return r, nil
}

// setTarget reads "http", "llm", "*", optionally with "[selectors]".
func (r *Rule) setTarget(t string) error {
	b, sel, hasSel := strings.Cut(t, "[")
	switch b {
	case "http", "llm":
		r.Builtin = b
	case "*", "":
	default:
		return fmt.Errorf("target %q: want http, llm or *", b)
	}
	if !hasSel {
		return nil
	}
	sel = strings.TrimSuffix(sel, "]")
	for _, tok := range strings.Fields(sel) {
		switch {
		case strings.HasPrefix(tok, "/"):
			if r.Path != "" {
				return fmt.Errorf("[%s]: two paths", sel)
			}
			r.Path = tok
		case isToken(tok):
			if r.Method != "" {
				return fmt.Errorf("[%s]: two methods", sel)
			}
			r.Method = tok
		case r.Builtin == LLM && !strings.ContainsAny(tok, ".:*"):
			if r.Provider != "" {
				return fmt.Errorf("[%s]: two providers", sel)
			}
			r.Provider = tok
		default:
			if r.Host != "" {
				return fmt.Errorf("[%s]: two hosts", sel)
			}
			r.Host = tok
		}
	}
	return nil
}

// setParam reads the fault's =PARAM.
func (r *Rule) setParam(p string) error {
	switch r.Fault {
	case Status:
		d, err := parseDuration(p)
		if err != nil {
			return fmt.Errorf("=%s: the retry-after wait: %v", p, err)
		}
		r.RetryAfter = d
	case Timeout:
		d, err := parseDuration(p)
		if err != nil {
			return fmt.Errorf("=%s: how long to hang: %v", p, err)
		}
		r.Hang = d
	case Latency:
		lo, hi, err := parseDelay(p)
		if err != nil {
			return fmt.Errorf("=%s: the delay: %v", p, err)
		}
		r.Delay, r.DelayMax = lo, hi
	case SlowBody:
		b, e, ok := strings.Cut(p, "/")
		n, err := strconv.Atoi(b)
		if err != nil || !ok {
			return fmt.Errorf("=%s: want BYTES/EVERY, e.g. 64/100ms", p)
		}
		d, err := parseDuration(e)
		if err != nil {
			return fmt.Errorf("=%s: %v", p, err)
		}
		r.Bytes, r.Every = n, d
	case Reset:
		return fmt.Errorf("=%s: reset takes no parameter", p)
	}
	return nil
}

// String returns the rule in the inline form, which ParseInline reads
// back to the same rule.
func (r Rule) String() string {
	var b strings.Builder
	if r.Builtin == "" {
		b.WriteString("*")
	} else {
		b.WriteString(r.Builtin)
	}
	var sel []string
	for _, s := range []string{r.Method, r.Provider, r.Host, r.Path} {
		if s != "" {
			sel = append(sel, s)
		}
	}
	if len(sel) > 0 {
		b.WriteString("[" + strings.Join(sel, " ") + "]")
	}
	b.WriteString(":")
	b.WriteString(r.faultText())
	if r.AfterSend {
		b.WriteString("+after_send")
	}
	if r.Rate != 1 {
		b.WriteString("@" + strconv.FormatFloat(r.Rate, 'g', -1, 64))
	}
	if r.Max > 0 {
		b.WriteString("#" + strconv.Itoa(r.Max))
	}
	return b.String()
}

// faultText is the fault and its parameter: "429=1s", "latency=100ms..400ms".
func (r Rule) faultText() string {
	switch r.Fault {
	case Status:
		s := strconv.Itoa(r.Status)
		if r.RetryAfter > 0 {
			s += "=" + r.RetryAfter.String()
		}
		return s
	case Timeout:
		if r.Hang > 0 {
			return "timeout=" + r.Hang.String()
		}
	case Latency:
		s := "latency=" + r.Delay.String()
		if r.DelayMax > r.Delay {
			s += ".." + r.DelayMax.String()
		}
		return s
	case SlowBody:
		return fmt.Sprintf("slow_body=%d/%s", r.Bytes, r.Every)
	}
	return string(r.Fault)
}

// label names the rule in reports: its name, or its inline form.
func (r Rule) label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.String()
}
