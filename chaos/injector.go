package chaos

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxEvents bounds the event log; later faults are counted in the
// summary but not logged.
const MaxEvents = 100_000

// Injector applies a profile's rules to the requests of the builtins it
// is wired into (HTTPTransport, LLMClient, WrapLLMProvider). It is safe for
// concurrent use. The methods of a nil *Injector inject nothing and return
// what they are given, so a caller can wire one in unconditionally.
type Injector struct {
	prof *Profile

	mu       sync.Mutex
	targets  map[string]*targetState
	events   []Event
	dropped  int
	seq      int
	requests int
	faulted  int
	onFault  func(Event)
}

// targetState is one target's position in its fault stream.
type targetState struct {
	hash     uint64
	n        int   // requests so far
	fired    []int // faults per rule
	faulted  int   // requests that got a fault
	byFault  map[string]int
	builtin  string
	provider string
}

// New returns an Injector for p. A nil profile gives a nil Injector, which
// injects nothing.
func New(p *Profile) *Injector {
	if p == nil {
		return nil
	}
	return &Injector{prof: p, targets: map[string]*targetState{}}
}

// Profile returns the injector's profile.
func (i *Injector) Profile() *Profile {
	if i == nil {
		return nil
	}
	return i.prof
}

// OnFault sets a function called (outside any lock) with each fault as it
// is injected, for logging.
func (i *Injector) OnFault(fn func(Event)) {
	if i == nil {
		return
	}
	i.mu.Lock()
	i.onFault = fn
	i.mu.Unlock()
}

// Event is one fault injected into one request.
type Event struct {
	Seq      int    // order of injection over all targets (not reproducible across targets)
	Target   string // the stream: "http/api.example.com", "llm/openai@api.openai.com", "llm/sim" (a fake)
	N        int    // the request's 1-based position on its target: reproducible
	Builtin  string // http or llm
	Provider string // llm: the provider's name in the configuration (its type when unknown)
	Host     string // the URL's host; "" for the fake provider
	Method   string
	Key      string // the request's idempotency key (<run-id>/<step>), when it has one

	Rule       int    // the rule's index in Profile.Rules
	RuleName   string // its name, or its inline form
	Fault      Fault
	Status     int           // Status: the status the rule asked for
	Sent       int           // Status: the status sent (529 becomes the provider's 503 where 529 does not exist)
	RetryAfter time.Duration // Status: the wait the answer asks for
	AfterSend  bool          // the request reached the server first
	Delay      time.Duration // Latency: the delay drawn; Timeout: the hang (0: until the context ends); SlowBody: the interval
	Bytes      int           // SlowBody: bytes per interval
	At         time.Time
}

// What describes the fault without the request: "429 retry_after=1s",
// "latency 120ms", "reset after_send".
func (e Event) What() string {
	var s string
	switch e.Fault {
	case Status:
		s = fmt.Sprint(e.Status)
		if e.Sent != 0 && e.Sent != e.Status {
			s += fmt.Sprintf(" (sent as %d)", e.Sent)
		}
		if e.RetryAfter > 0 {
			s += " retry_after=" + e.RetryAfter.String()
		}
	case Timeout:
		s = "timeout"
		if e.Delay > 0 {
			s += " hang=" + e.Delay.String()
		}
	case Latency:
		s = "latency " + e.Delay.String()
	case SlowBody:
		s = fmt.Sprintf("slow_body %dB/%s", e.Bytes, e.Delay)
	default:
		s = string(e.Fault)
	}
	if e.AfterSend {
		s += " after_send"
	}
	return s
}

// String is the event's reproducible part: "http/api.example.com #3 503".
func (e Event) String() string {
	return fmt.Sprintf("%s #%d %s", e.Target, e.N, e.What())
}

// reqInfo is what the rules see of a request.
type reqInfo struct {
	builtin  string
	provider string // llm: the configured name, else the type
	kind     string // llm: the provider type
	host     string // the URL's host, lower-case, with a port if it names one
	port     string // the port in effect
	method   string
	path     string
	key      string
}

func (ri *reqInfo) target() string {
	if ri.builtin == LLM {
		if ri.host == "" {
			return "llm/" + ri.provider
		}
		return "llm/" + ri.provider + "@" + ri.host
	}
	return "http/" + ri.host
}

func (r *Rule) matches(ri *reqInfo) bool {
	if r.Builtin != "" && r.Builtin != ri.builtin {
		return false
	}
	if r.Provider != "" {
		if ri.builtin != LLM {
			return false
		}
		if r.Provider != ri.provider && r.Provider != ri.kind && !(r.Provider == "compatible" && ri.kind == "openai_compatible") {
			return false
		}
	}
	if !matchHost(r.Host, ri.host, ri.port) {
		return false
	}
	if r.Method != "" && r.Method != ri.method {
		return false
	}
	if r.Path != "" && !strings.HasPrefix(ri.path, r.Path) {
		return false
	}
	return true
}

// decision is what happens to one request.
type decision struct {
	delay time.Duration // the latencies, summed
	term  *Rule         // a status, timeout or reset
	slow  *Rule
	sent  int // the status on the wire for term
	n     int // the request's position on its target
}

func (d *decision) none() bool { return d == nil || (d.delay == 0 && d.term == nil && d.slow == nil) }

// decide takes the request's place in its target's stream and draws its
// faults. Each rule that selects the request draws on its own, from
// (seed, target, n, rule): latencies add up; the first status, timeout or
// reset drawn replaces the answer; the first slow_body drawn slows the
// body of an answer that is not replaced.
func (i *Injector) decide(ri *reqInfo) *decision {
	key := ri.target()
	i.mu.Lock()
	t := i.targets[key]
	if t == nil {
		t = &targetState{hash: streamHash(i.prof.Seed, key), fired: make([]int, len(i.prof.Rules)), byFault: map[string]int{},
			builtin: ri.builtin, provider: ri.provider}
		i.targets[key] = t
	}
	t.n++
	i.requests++
	n := t.n
	d := &decision{n: n}
	var evs []Event
	now := time.Now()
	for idx := range i.prof.Rules {
		r := &i.prof.Rules[idx]
		if !r.matches(ri) {
			continue
		}
		if r.Max > 0 && t.fired[idx] >= r.Max {
			continue
		}
		if r.Rate < 1 && unit(t.hash, n, idx, 0) >= r.Rate {
			continue
		}
		e := Event{Target: key, N: n, Builtin: ri.builtin, Host: ri.host, Method: ri.method, Key: ri.key,
			Rule: idx, RuleName: r.label(), Fault: r.Fault, AfterSend: r.AfterSend, At: now}
		if ri.builtin == LLM {
			e.Provider = ri.provider
		}
		switch r.Fault {
		case Latency:
			delay := r.Delay
			if r.DelayMax > r.Delay {
				delay += time.Duration(unit(t.hash, n, idx, 1) * float64(r.DelayMax-r.Delay)).Round(time.Microsecond)
			}
			d.delay += delay
			e.Delay = delay
		case Status, Timeout, Reset:
			if d.term != nil {
				continue
			}
			d.term = r
			switch r.Fault {
			case Status:
				d.sent = wireStatus(ri, r.Status)
				e.Status, e.Sent, e.RetryAfter = r.Status, d.sent, r.RetryAfter
			case Timeout:
				e.Delay = r.Hang
			}
		case SlowBody:
			if d.slow != nil {
				continue
			}
			d.slow = r
			e.Delay, e.Bytes = r.Every, r.Bytes
		}
		evs = append(evs, e)
	}
	if d.term != nil && d.slow != nil {
		// The answer is replaced: there is no body to slow down.
		for k := range evs {
			if evs[k].Fault == SlowBody {
				evs = append(evs[:k], evs[k+1:]...)
				break
			}
		}
		d.slow = nil
	}
	if len(evs) > 0 {
		t.faulted++
		i.faulted++
	}
	for k := range evs {
		t.fired[evs[k].Rule]++
		t.byFault[faultKey(&evs[k])]++
		i.seq++
		evs[k].Seq = i.seq
		if len(i.events) < MaxEvents {
			i.events = append(i.events, evs[k])
		} else {
			i.dropped++
		}
	}
	fn := i.onFault
	i.mu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	if fn != nil {
		for _, e := range evs {
			fn(e)
		}
	}
	return d
}

// faultKey groups faults in summaries: "429", "timeout", "latency".
func faultKey(e *Event) string {
	if e.Fault == Status {
		return fmt.Sprint(e.Status)
	}
	return string(e.Fault)
}

// streamHash seeds a target's stream from the seed and the target's name.
func streamHash(seed int64, key string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(key))
	return mix(h.Sum64())
}

// unit is the draw for (stream, request n, rule, salt), in [0, 1).
func unit(h uint64, n, rule int, salt uint64) float64 {
	x := mix(h ^ mix(uint64(n)*0x9E3779B97F4A7C15+uint64(rule+1)<<40+salt<<56))
	return float64(x>>11) / (1 << 53)
}

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	return x ^ (x >> 31)
}

// Events returns the faults injected so far, in the order they were
// injected (at most MaxEvents).
func (i *Injector) Events() []Event {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]Event(nil), i.events...)
}

// Sequence returns events in their reproducible form, one line per fault,
// ordered by target, then position on the target, then rule: the same
// seed and the same requests give the same lines, whatever the
// interleaving of targets.
func Sequence(events []Event) []string {
	ev := append([]Event(nil), events...)
	sort.SliceStable(ev, func(a, b int) bool {
		if ev[a].Target != ev[b].Target {
			return ev[a].Target < ev[b].Target
		}
		if ev[a].N != ev[b].N {
			return ev[a].N < ev[b].N
		}
		return ev[a].Rule < ev[b].Rule
	})
	out := make([]string, len(ev))
	for k, e := range ev {
		out[k] = e.String()
	}
	return out
}

// Diff compares two runs' fault sequences. It returns "" when they are the
// same, else a description of the first difference.
func Diff(a, b []Event) string {
	sa, sb := Sequence(a), Sequence(b)
	for k := 0; k < len(sa) && k < len(sb); k++ {
		if sa[k] != sb[k] {
			return fmt.Sprintf("fault %d differs: %q vs %q", k+1, sa[k], sb[k])
		}
	}
	switch {
	case len(sa) > len(sb):
		return fmt.Sprintf("the first has %d more faults, starting with %q", len(sa)-len(sb), sa[len(sb)])
	case len(sb) > len(sa):
		return fmt.Sprintf("the second has %d more faults, starting with %q", len(sb)-len(sa), sb[len(sa)])
	}
	return ""
}

// Fingerprint is a short hash of a fault sequence: two runs with the same
// fingerprint got the same faults at the same places.
func Fingerprint(events []Event) string {
	h := sha256.New()
	for _, l := range Sequence(events) {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Summary counts what an Injector did.
type Summary struct {
	Profile     string
	Seed        int64
	Requests    int            // requests that went through the injector
	Faulted     int            // requests that got at least one fault
	Faults      map[string]int // by fault: "429", "503", "timeout", "reset", "latency", "slow_body"
	Targets     []TargetSummary
	Fingerprint string // of the logged events (see Fingerprint)
	Dropped     int    // faults not logged (over MaxEvents)
}

// TargetSummary counts one target's requests and faults.
type TargetSummary struct {
	Target   string
	Builtin  string
	Provider string
	Requests int
	Faulted  int
	Faults   map[string]int
}

// Summary returns the counts so far.
func (i *Injector) Summary() Summary {
	if i == nil {
		return Summary{Faults: map[string]int{}}
	}
	i.mu.Lock()
	s := Summary{Profile: i.prof.Name, Seed: i.prof.Seed, Requests: i.requests, Faulted: i.faulted, Faults: map[string]int{}, Dropped: i.dropped}
	for k, t := range i.targets {
		ts := TargetSummary{Target: k, Builtin: t.builtin, Provider: t.provider, Requests: t.n, Faulted: t.faulted, Faults: map[string]int{}}
		for f, c := range t.byFault {
			ts.Faults[f] = c
			s.Faults[f] += c
		}
		s.Targets = append(s.Targets, ts)
	}
	events := append([]Event(nil), i.events...)
	i.mu.Unlock()
	sort.Slice(s.Targets, func(a, b int) bool { return s.Targets[a].Target < s.Targets[b].Target })
	s.Fingerprint = Fingerprint(events)
	return s
}

// String renders the summary for a report:
//
//	chaos profile flaky.yaml, seed 42: 7 of 20 requests faulted (429: 2, 503: 3, reset: 2), fingerprint 1a2b...
//	  http/api.example.com       12 requests, 4 faulted: 503: 2, reset: 2
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos profile %s, seed %d: %d of %d requests faulted", s.Profile, s.Seed, s.Faulted, s.Requests)
	if len(s.Faults) > 0 {
		b.WriteString(" (" + countList(s.Faults) + ")")
	}
	fmt.Fprintf(&b, ", fingerprint %s\n", s.Fingerprint)
	w := 0
	for _, t := range s.Targets {
		w = max(w, len(t.Target))
	}
	for _, t := range s.Targets {
		fmt.Fprintf(&b, "  %-*s  %d requests, %d faulted", w, t.Target, t.Requests, t.Faulted)
		if len(t.Faults) > 0 {
			b.WriteString(": " + countList(t.Faults))
		}
		b.WriteByte('\n')
	}
	if s.Dropped > 0 {
		fmt.Fprintf(&b, "  (%d faults past the first %d were not logged)\n", s.Dropped, MaxEvents)
	}
	return b.String()
}

func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for k, f := range keys {
		parts[k] = fmt.Sprintf("%s: %d", f, m[f])
	}
	return strings.Join(parts, ", ")
}
