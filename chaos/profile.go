package chaos

import (
	"github.com/starflow/starflow/internal/yamlerr"

	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Fault is what a rule does to a request it selects.
type Fault string

// The faults.
const (
	Status   Fault = "status"    // answer with an HTTP error status (Rule.Status) instead of the server
	Timeout  Fault = "timeout"   // no answer: hang until the request's context ends (or Rule.Hang)
	Reset    Fault = "reset"     // the connection is reset (ECONNRESET)
	Latency  Fault = "latency"   // the request is delayed by Rule.Delay (to Rule.DelayMax)
	SlowBody Fault = "slow_body" // the response body trickles: Rule.Bytes per Rule.Every
)

// The builtins a rule can select.
const (
	HTTP = "http"
	LLM  = "llm"
)

// Statuses lists the error statuses a Status rule may inject.
var Statuses = []int{429, 500, 502, 503, 504, 529}

// Defaults.
const (
	DefaultRetryAfter = time.Second            // the wait a 429 asks for when the rule names none
	DefaultBytes      = 64                     // slow_body: bytes per interval
	DefaultEvery      = 100 * time.Millisecond // slow_body: the interval
)

// providerKinds are the llm provider types a provider selector may name
// (besides a provider's name in the llm configuration). "compatible" is
// short for "openai_compatible".
var providerKinds = []string{"openai", "azure", "openai_compatible", "compatible", "anthropic", "gemini", "fake"}

// Rule selects requests and says which fault they get, and how often.
// Empty selectors match everything.
type Rule struct {
	Name string // optional, for reports; inline rules are named by their text
	Line int    // the rule's line in its profile file; 0 for inline rules

	// Selection.
	Builtin  string // HTTP, LLM, or "" for both
	Provider string // llm: a provider type (openai, azure, openai_compatible or compatible, anthropic, gemini, fake) or a provider's name in the llm configuration
	Host     string // "api.example.com" (any port), "*.example.com" (subdomains), "127.0.0.1:8080" (host and port), "*" (any)
	Method   string // http: "POST"
	Path     string // http: a path prefix, "/v1/"

	// The fault.
	Fault      Fault
	Status     int           // Status: 429, 500, 502, 503, 504 or 529
	RetryAfter time.Duration // Status 429, 503, 529: the wait the answer asks for (429 default: 1s)
	AfterSend  bool          // Status, Timeout, Reset: the request reaches the server first and its answer is lost
	Hang       time.Duration // Timeout: give up after this long with an i/o timeout; 0: until the request's context ends
	Delay      time.Duration // Latency: the added delay...
	DelayMax   time.Duration // ...or, when larger, drawn between Delay and DelayMax
	Bytes      int           // SlowBody: bytes per interval (default 64)
	Every      time.Duration // SlowBody: the interval (default 100ms)

	Rate float64 // share of the selected requests that get the fault, 0 to 1
	Max  int     // at most this many faults from this rule per target; 0: no limit
}

// Profile is a seed and a list of rules.
type Profile struct {
	Name    string // the file it came from, or "inline"
	Seed    int64
	HasSeed bool // the seed was given (in the file, or to ParseInline or WithSeed)
	Rules   []Rule
}

// WithSeed returns a copy of p with the given seed (a --chaos-seed flag
// overriding the file's).
func (p *Profile) WithSeed(seed int64) *Profile {
	c := *p
	c.Rules = append([]Rule(nil), p.Rules...)
	c.Seed, c.HasSeed = seed, true
	return &c
}

// ProfileError is one problem in a profile, at a line of its file.
type ProfileError = yamlerr.Error

// LoadProfile reads a YAML profile file (see ParseProfile).
func LoadProfile(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("chaos profile: %w", err)
	}
	return ParseProfile(path, data)
}

// Load reads the value of a --chaos flag: a profile file when it ends in
// .yaml or .yml, the inline form otherwise (without a seed: HasSeed is
// false).
func Load(value string) (*Profile, error) {
	v := strings.TrimSpace(value)
	if strings.HasSuffix(v, ".yaml") || strings.HasSuffix(v, ".yml") {
		return LoadProfile(v)
	}
	p, err := ParseInline(v, 0)
	if err != nil {
		return nil, err
	}
	p.HasSeed = false
	return p, nil
}

// ParseProfile parses and validates a YAML profile; name is used in error
// messages, which name the line: "name:12: rules[2]: rate 1.5 is not
// between 0 and 1". Every problem found is reported (errors.Join of
// *ProfileError). A document whose top level has a "chaos" key (a section
// of a larger configuration) is read from that key, which may also hold
// the inline form as a string.
func ParseProfile(name string, data []byte) (*Profile, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlError(name, err)
	}
	pp := &profileParser{file: name}
	var body ast.Node
	if len(file.Docs) > 0 {
		body = file.Docs[0].Body
	}
	body = unwrap(body)
	if body == nil {
		return nil, &ProfileError{File: name, Message: "the profile is empty: it needs rules"}
	}
	entries, ok := mapping(body)
	if !ok {
		return nil, &ProfileError{File: name, Line: line(body), Message: "a profile is a mapping with seed and rules"}
	}
	for _, e := range entries {
		if keyOf(e) != "chaos" {
			continue
		}
		v := unwrap(e.Value)
		if s, ok := v.(*ast.StringNode); ok {
			p, err := ParseInline(s.Value, 0)
			if err != nil {
				return nil, &ProfileError{File: name, Line: line(v), Message: err.Error()}
			}
			p.Name, p.HasSeed = name, false
			return p, nil
		}
		if entries, ok = mapping(v); !ok {
			return nil, &ProfileError{File: name, Line: line(e), Message: "chaos: want a mapping with seed and rules, or an inline string"}
		}
		break
	}
	p := pp.profile(entries, line(body))
	if len(pp.errs) > 0 {
		return nil, errors.Join(pp.errs...)
	}
	p.Name = name
	return p, nil
}

func yamlError(name string, err error) error { return yamlerr.From(name, err) }

// unwrap skips anchors, tags and comments around a node.
func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.CommentGroupNode:
			return nil
		default:
			return n
		}
	}
}

func mapping(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

func keyOf(e *ast.MappingValueNode) string {
	if t := e.Key.GetToken(); t != nil {
		return t.Value
	}
	return e.Key.String()
}

func line(n ast.Node) int {
	if n == nil {
		return 0
	}
	if t := n.GetToken(); t != nil {
		return t.Position.Line
	}
	return 0
}

// scalar returns a scalar node's text ("" for null) and whether it is one.
func scalar(n ast.Node) (string, bool) {
	switch v := unwrap(n).(type) {
	case nil, *ast.NullNode:
		return "", true
	case *ast.StringNode:
		return v.Value, true
	case ast.ScalarNode:
		if t := v.GetToken(); t != nil {
			return t.Value, true
		}
		return fmt.Sprint(v.GetValue()), true
	}
	return "", false
}

type profileParser struct {
	file string
	errs []error
}

func (pp *profileParser) errorf(ln int, format string, args ...any) {
	pp.errs = append(pp.errs, &ProfileError{File: pp.file, Line: ln, Message: fmt.Sprintf(format, args...)})
}

func (pp *profileParser) profile(entries []*ast.MappingValueNode, docLine int) *Profile {
	p := &Profile{}
	var rules *ast.MappingValueNode
	for _, e := range entries {
		k, ln := keyOf(e), line(e.Key)
		switch k {
		case "version":
			if s, _ := scalar(e.Value); s != "1" {
				pp.errorf(ln, "version %s: only version 1 is known", s)
			}
		case "seed":
			s, _ := scalar(e.Value)
			seed, err := strconv.ParseInt(s, 0, 64)
			if err != nil {
				pp.errorf(ln, "seed %q: want an integer", s)
				continue
			}
			p.Seed, p.HasSeed = seed, true
		case "rules":
			rules = e
		default:
			pp.errorf(ln, "unknown field %q (want version, seed, rules)", k)
		}
	}
	if rules == nil {
		pp.errorf(docLine, "no rules: a profile needs at least one")
		return p
	}
	seq, ok := unwrap(rules.Value).(*ast.SequenceNode)
	if !ok {
		pp.errorf(line(rules.Key), "rules: want a list of rules")
		return p
	}
	if len(seq.Values) == 0 {
		pp.errorf(line(rules.Key), "rules: the list is empty")
	}
	for i, v := range seq.Values {
		if r, ok := pp.rule(i, v); ok {
			p.Rules = append(p.Rules, r)
		}
	}
	return p
}

// rule reads one entry of rules.
func (pp *profileParser) rule(i int, n ast.Node) (Rule, bool) {
	r := Rule{Line: line(n), Rate: 1}
	entries, ok := mapping(unwrap(n))
	if !ok {
		pp.errorf(line(n), "rules[%d]: want a mapping (builtin, provider, host, fault, rate, ...)", i)
		return r, false
	}
	if len(entries) > 0 {
		r.Line = line(entries[0].Key)
	}
	before := len(pp.errs)
	where := func(k string) string { return fmt.Sprintf("rules[%d]: %s", i, k) }
	seen := map[string]int{}
	var faultLine int
	for _, e := range entries {
		k, ln := keyOf(e), line(e.Key)
		seen[k] = ln
		s, isScalar := scalar(e.Value)
		if !isScalar {
			pp.errorf(ln, "%s: want a single value", where(k))
			continue
		}
		dur := func() time.Duration {
			d, err := parseDuration(s)
			if err != nil {
				pp.errorf(ln, "%s: %v", where(k), err)
			}
			return d
		}
		switch k {
		case "name":
			r.Name = s
		case "builtin":
			r.Builtin = s
		case "provider":
			r.Provider = s
		case "host":
			r.Host = s
		case "method":
			r.Method = s
		case "path":
			r.Path = s
		case "fault":
			faultLine = ln
			if err := r.setFault(s); err != nil {
				pp.errorf(ln, "%s: %v", where(k), err)
			}
		case "retry_after":
			r.RetryAfter = dur()
		case "after_send":
			b, err := strconv.ParseBool(s)
			if err != nil {
				pp.errorf(ln, "%s: %q is not true or false", where(k), s)
			}
			r.AfterSend = b
		case "hang":
			r.Hang = dur()
		case "delay":
			lo, hi, err := parseDelay(s)
			if err != nil {
				pp.errorf(ln, "%s: %v", where(k), err)
			}
			r.Delay, r.DelayMax = lo, hi
		case "bytes":
			b, err := strconv.Atoi(s)
			if err != nil {
				pp.errorf(ln, "%s: %q is not an integer", where(k), s)
			}
			r.Bytes = b
		case "every":
			r.Every = dur()
		case "rate":
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				pp.errorf(ln, "%s: %q is not a number", where(k), s)
				continue
			}
			r.Rate = f
		case "max":
			m, err := strconv.Atoi(s)
			if err != nil {
				pp.errorf(ln, "%s: %q is not an integer", where(k), s)
			}
			r.Max = m
		default:
			pp.errorf(ln, "%s: unknown field (want name, builtin, provider, host, method, path, fault, retry_after, after_send, hang, delay, bytes, every, rate, max)", where(k))
		}
	}
	if len(pp.errs) > before {
		return r, false
	}
	if faultLine == 0 {
		pp.errorf(r.Line, "rules[%d]: no fault (want fault: 429, 500, 502, 503, 504, 529, timeout, reset, latency or slow_body)", i)
		return r, false
	}
	if err := r.validate(); err != nil {
		var fe *fieldError
		ln := r.Line
		if errors.As(err, &fe) {
			if l, ok := seen[fe.field]; ok {
				ln = l
			}
		}
		pp.errorf(ln, "rules[%d]: %v", i, err)
		return r, false
	}
	return r, true
}

// setFault reads a fault name or status code.
func (r *Rule) setFault(s string) error {
	switch f := Fault(strings.ToLower(strings.TrimSpace(s))); f {
	case Timeout, Reset, Latency, SlowBody:
		r.Fault = f
		return nil
	case Status:
		return fmt.Errorf("give the status itself: fault: 503")
	}
	code, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a fault (want 429, 500, 502, 503, 504, 529, timeout, reset, latency or slow_body)", s)
	}
	r.Fault, r.Status = Status, code
	return nil
}

// fieldError is a validation problem with one field, so that the
// message can name that field's line.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.msg }

func ferr(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// validate checks a rule and fills in defaults.
func (r *Rule) validate() error {
	r.Builtin = strings.ToLower(strings.TrimSpace(r.Builtin))
	if r.Builtin == "*" {
		r.Builtin = ""
	}
	switch r.Builtin {
	case "", HTTP, LLM:
	default:
		return ferr("builtin", "builtin %q: want http or llm", r.Builtin)
	}
	if r.Provider != "" {
		if r.Builtin == HTTP {
			return ferr("provider", "provider %q selects llm requests, but builtin is http", r.Provider)
		}
		if !validName(r.Provider) {
			return ferr("provider", "provider %q: want a provider type (%s) or a provider's name", r.Provider, strings.Join(providerKinds, ", "))
		}
		r.Builtin = LLM
	}
	if r.Method != "" || r.Path != "" {
		if r.Builtin == LLM {
			return ferr("method", "method and path select http requests, but builtin is llm")
		}
		r.Builtin = HTTP
	}
	if r.Method != "" {
		r.Method = strings.ToUpper(r.Method)
		if !isToken(r.Method) {
			return ferr("method", "method %q is not an HTTP method", r.Method)
		}
	}
	if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
		return ferr("path", "path %q: want a path prefix starting with /", r.Path)
	}
	if r.Host != "" {
		h, err := normHost(r.Host)
		if err != nil {
			return ferr("host", "%v", err)
		}
		r.Host = h
	}
	if math.IsNaN(r.Rate) || r.Rate < 0 || r.Rate > 1 {
		return ferr("rate", "rate %g is not between 0 and 1", r.Rate)
	}
	if r.Max < 0 {
		return ferr("max", "max %d is negative", r.Max)
	}
	if r.AfterSend && r.Fault != Status && r.Fault != Timeout && r.Fault != Reset {
		return ferr("after_send", "after_send applies to status faults, timeout and reset, not %s", r.Fault)
	}
	if r.RetryAfter != 0 && (r.Fault != Status || (r.Status != 429 && r.Status != 503 && r.Status != 529)) {
		return ferr("retry_after", "retry_after applies to faults 429, 503 and 529")
	}
	if r.Hang != 0 && r.Fault != Timeout {
		return ferr("hang", "hang applies to the timeout fault")
	}
	if (r.Delay != 0 || r.DelayMax != 0) && r.Fault != Latency {
		return ferr("delay", "delay applies to the latency fault")
	}
	if (r.Bytes != 0 || r.Every != 0) && r.Fault != SlowBody {
		return ferr("bytes", "bytes and every apply to the slow_body fault")
	}
	switch r.Fault {
	case Status:
		ok := false
		for _, s := range Statuses {
			ok = ok || s == r.Status
		}
		if !ok {
			return ferr("fault", "status %d cannot be injected (want 429, 500, 502, 503, 504 or 529)", r.Status)
		}
		if r.RetryAfter < 0 {
			return ferr("retry_after", "retry_after %s is negative", r.RetryAfter)
		}
		if r.Status == 429 && r.RetryAfter == 0 {
			r.RetryAfter = DefaultRetryAfter
		}
	case Timeout:
		if r.Hang < 0 {
			return ferr("hang", "hang %s is negative", r.Hang)
		}
	case Reset:
	case Latency:
		if r.Delay <= 0 {
			return ferr("delay", "the latency fault needs a positive delay (delay: 200ms, or a range: 100ms..400ms)")
		}
		if r.DelayMax != 0 && r.DelayMax < r.Delay {
			return ferr("delay", "delay range %s..%s runs backwards", r.Delay, r.DelayMax)
		}
		if r.DelayMax == r.Delay {
			r.DelayMax = 0
		}
	case SlowBody:
		if r.Bytes == 0 {
			r.Bytes = DefaultBytes
		}
		if r.Every == 0 {
			r.Every = DefaultEvery
		}
		if r.Bytes < 0 {
			return ferr("bytes", "bytes %d is negative", r.Bytes)
		}
		if r.Every < 0 {
			return ferr("every", "every %s is negative", r.Every)
		}
	case "":
		return ferr("fault", "no fault")
	default:
		return ferr("fault", "unknown fault %q", r.Fault)
	}
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._/-", c)) {
			return false
		}
	}
	return true
}

func isToken(s string) bool {
	for _, c := range s {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return s != ""
}

// normHost checks a host selector and lower-cases it.
func normHost(h string) (string, error) {
	h = strings.ToLower(strings.TrimSpace(h))
	switch {
	case h == "*":
		return h, nil
	case h == "":
		return "", fmt.Errorf("host is empty")
	case strings.HasPrefix(h, "*."):
		if strings.ContainsAny(h[2:], "*/?@ ") || len(h) == 2 {
			return "", fmt.Errorf("host %q: want host, host:port, *.domain or *", h)
		}
		return h, nil
	case strings.ContainsAny(h, "/*?@ "):
		return "", fmt.Errorf("host %q: want host, host:port, *.domain or *", h)
	}
	return h, nil
}

// parseDuration reads "200ms", "1.5s", "2m", or a bare number of seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("duration %s is negative", s)
		}
		return d, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && !math.IsInf(f, 0) {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("%q is not a duration (want 200ms, 1.5s, 2m)", s)
}

// parseDelay reads "200ms" or a range "100ms..400ms".
func parseDelay(s string) (lo, hi time.Duration, err error) {
	a, b, isRange := strings.Cut(s, "..")
	if lo, err = parseDuration(a); err != nil {
		return 0, 0, err
	}
	if isRange {
		if hi, err = parseDuration(b); err != nil {
			return 0, 0, err
		}
	}
	return lo, hi, nil
}

// matchHost reports whether a host pattern selects a request to host
// (the URL's host, with a port when the URL names one); port is the port
// in effect (the scheme's default when the URL names none).
func matchHost(pattern, host, port string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	if host == "" {
		return false // the in-process fake has no host
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.Trim(name, "[]")
	if strings.HasPrefix(pattern, "*.") {
		return strings.HasSuffix(name, pattern[1:])
	}
	if ph, pp, err := net.SplitHostPort(pattern); err == nil {
		return strings.Trim(ph, "[]") == name && pp == port
	}
	return strings.Trim(pattern, "[]") == name
}
