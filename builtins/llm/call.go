package llm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/starflow/starflow/builtins/llm/provider"
	"github.com/starflow/starflow/runtime"
)

// Request is one llm() call in Go form.
type Request struct {
	Prompt      string             // appended as the last user message
	Messages    []provider.Message // the conversation before Prompt; "system" turns join System
	System      string
	Model       string // the alias; "" means "default"
	MaxTokens   int
	Temperature *float64
	// Schema, if set, is a JSON Schema the answer must satisfy: the model
	// is asked for JSON, the answer is validated, and invalid answers are
	// retried with the validation error fed back.
	Schema   map[string]any
	Timeout  time.Duration // per attempt; 0: the configured timeout
	Deadline time.Time     // for the whole call; zero: the call's start + the alias's deadline
	Key      string        // idempotency key; inside a run, Call.Key ("<run-id>/<step>")
}

// Result is an llm() answer.
type Result struct {
	Text       string          `json:"text"`
	JSON       json.RawMessage `json:"json,omitempty"` // the validated answer when Schema was set
	Model      string          `json:"model"`          // as the provider reported it
	Provider   string          `json:"provider"`
	Deployment string          `json:"deployment"`
	Usage      provider.Usage  `json:"usage"`
	CostUSD    float64         `json:"cost_usd"`   // from the deployment's prices; 0 when none are configured
	LatencyMS  int64           `json:"latency_ms"` // of the request that answered
	Attempts   int             `json:"attempts"`   // provider requests this call made
	Tier       int             `json:"tier"`       // 1-based position in the fallback chain; 0 for a template
	Cached     bool            `json:"cached"`     // served from the response cache
	Degraded   bool            `json:"degraded"`   // every tier failed: a cached or template answer
	Refused    bool            `json:"refused"`    // the model refused; Text is the configured safe response
}

// callEnv is what a call needs from its surroundings.
type callEnv struct {
	log    zerolog.Logger
	secret func(runtime.Secret) (string, error) // the run's resolver; nil outside a run
	keys   []string                             // keys resolved during the call, scrubbed from messages
}

// Complete makes one llm call outside a script: routing, retries,
// fallbacks, caching and degradation as llm() does. It waits between
// rounds itself, on a timer, until ctx ends. Errors are *runtime.Error
// with the kinds documented in spec/llm.md.
func (m *Module) Complete(ctx context.Context, req Request) (res *Result, err error) {
	env := &callEnv{log: m.log}
	cc, err := m.newCall(ctx, &req, env, m.now, m.now())
	if err != nil {
		return nil, scrubError(err, env.keys)
	}
	// Outside a run the caller's deadline also bounds the call.
	if d, ok := ctx.Deadline(); ok && d.Before(cc.deadline) {
		cc.deadline = d
	}
	defer func() { err = cc.end(err) }()
	if r := cc.idempotent(m); r != nil {
		return r, nil
	}
	for {
		res, fail, wait := m.rounds(cc)
		if wait == nil {
			return m.finish(cc, res, fail)
		}
		t := time.NewTimer(wait.d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// callCtx is one call: its request, clock and deadline, and where its
// routing stands. One allocation per call holds the buffers of its trace.
type callCtx struct {
	context.Context // the caller's; its end is an interruption, not an outcome

	// now is the call's clock, for its deadline, the deployments'
	// cooldowns and capacity windows, and cache stamps: inside a run the
	// runtime's clock, so that the runtime's waits (skipped ones too) are
	// seen by the cooldowns they wait for.
	now      func() time.Time
	started  time.Time // when the call began, on now
	deadline time.Time // on now
	expired  bool      // an attempt was cut short by the deadline

	a       *alias // the alias asked for
	req     *Request
	sch     *compiledSchema
	digest  string
	env     *callEnv
	estIn   int // the prompt's estimated tokens
	estCall int // estimated tokens of a request and its answer

	st     routeState
	base   provider.Request // the conversation, provider-neutral
	msgBuf [2]provider.Message
	attBuf [2]attemptRecord
	preq   provider.Request // the request of the current attempt
}

// over reports whether the call must stop: its deadline passed or its
// caller is gone.
func (c *callCtx) over() bool {
	return c.expired || c.Err() != nil || !c.now().Before(c.deadline)
}

// routeState is where a call stands between rounds: what the next round
// continues from. Inside a run it is the runtime.Retry state, kept in the
// journal while the run waits suspended, so it holds no keys and its size
// is bounded (see trace).
type routeState struct {
	Alias    string   `json:"alias,omitempty"` // the alias routed now, after context fallbacks ("": the one asked for)
	Round    int      `json:"round"`           // rounds done on it
	Reroutes int      `json:"reroutes,omitempty"`
	N        int      `json:"n"` // provider requests so far
	Trace    trace    `json:"trace"`
	Failures failures `json:"failures"`
}

// Bounds on what a call's trace keeps, so that its journal detail and the
// state it carries between rounds stay small however long it retries.
const (
	maxTraceAttempts  = 100 // the first keepFirstAttempts and the latest
	keepFirstAttempts = 10
	maxTraceWaits     = 50
	maxTraceSkips     = 50
	maxTraceText      = 1000 // bytes of one error message
	maxFailureText    = 600  // bytes of one deployment's last failure
)

// trace is the call's journal detail (Call.SetDetail): what was tried,
// skipped and waited for. It never holds keys.
type trace struct {
	Alias           string          `json:"alias"`
	Digest          string          `json:"digest"`
	Attempts        []attemptRecord `json:"attempts,omitempty"`
	AttemptsOmitted int             `json:"attempts_omitted,omitempty"` // attempts left out of Attempts (after the first 10), to bound its size
	Skipped         []skipRecord    `json:"skipped,omitempty"`
	Waits           []waitRecord    `json:"waits,omitempty"`
	WaitsOmitted    int             `json:"waits_omitted,omitempty"`
	ContextFallback []string        `json:"context_fallback,omitempty"`
	Outcome         string          `json:"outcome"`
	TotalMS         int64           `json:"total_ms"`
}

type attemptRecord struct {
	N            int    `json:"n"`
	Round        int    `json:"round"`
	Tier         int    `json:"tier"`
	Alias        string `json:"alias"`
	Deployment   string `json:"deployment"`
	Provider     string `json:"provider"`
	Model        string `json:"model"`
	Status       int    `json:"status,omitempty"`
	Class        string `json:"class,omitempty"` // empty on success
	Error        string `json:"error,omitempty"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
	LatencyMS    int64  `json:"latency_ms"`
	Repair       int    `json:"repair,omitempty"` // structured-output repair number
}

type skipRecord struct {
	Tier       int    `json:"tier"`
	Deployment string `json:"deployment"`
	Reason     string `json:"reason"`
}

type waitRecord struct {
	AfterRound int    `json:"after_round"`
	WaitMS     int64  `json:"wait_ms"`
	Reason     string `json:"reason"`
}

func (tr *trace) skip(tierN int, s skip) {
	for _, x := range tr.Skipped {
		if x.Deployment == s.m.cfg.Name && x.Reason == s.why {
			return
		}
	}
	if len(tr.Skipped) < maxTraceSkips {
		tr.Skipped = append(tr.Skipped, skipRecord{Tier: tierN, Deployment: s.m.cfg.Name, Reason: s.why})
	}
}

// attempt records a provider request. Past maxTraceAttempts, the oldest
// after the first keepFirstAttempts make room.
func (tr *trace) attempt(rec attemptRecord) {
	rec.Error = truncateText(rec.Error, maxTraceText)
	if len(tr.Attempts) >= maxTraceAttempts {
		copy(tr.Attempts[keepFirstAttempts:], tr.Attempts[keepFirstAttempts+1:])
		tr.Attempts = tr.Attempts[:len(tr.Attempts)-1]
		tr.AttemptsOmitted++
	}
	tr.Attempts = append(tr.Attempts, rec)
}

func (tr *trace) wait(w waitRecord) {
	if len(tr.Waits) >= maxTraceWaits {
		copy(tr.Waits[1:], tr.Waits[2:])
		tr.Waits = tr.Waits[:len(tr.Waits)-1]
		tr.WaitsOmitted++
	}
	tr.Waits = append(tr.Waits, w)
}

// attemptError is a failed attempt, classified.
type attemptError struct {
	class string // a provider.Class, or "invalid_output"
	perr  *provider.Error
	msg   string
}

func (e *attemptError) Error() string {
	if e.perr != nil {
		return e.perr.Error()
	}
	return e.msg
}

// failures remembers the last failure of each deployment, for the error
// that lists what was tried.
type failures struct {
	Order []string          `json:"order,omitempty"`
	Last  map[string]string `json:"last,omitempty"`
	Class map[string]string `json:"class,omitempty"`
	N     int               `json:"n,omitempty"`
}

func (f *failures) add(name, msg, class string) {
	if f.Last == nil {
		f.Last, f.Class = map[string]string{}, map[string]string{}
	}
	if _, ok := f.Last[name]; !ok {
		f.Order = append(f.Order, name)
	}
	f.Last[name], f.Class[name] = truncateText(msg, maxFailureText), class
	f.N++
}

func (f *failures) summary() string { return f.summaryUpTo(1500) }

// summaryUpTo is the summary, cut after about limit bytes.
func (f *failures) summaryUpTo(limit int) string {
	var b strings.Builder
	for i, n := range f.Order {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(truncateText(n+": "+f.Last[n], limit))
		if b.Len() > limit {
			b.WriteString("; …")
			break
		}
	}
	return b.String()
}

// kind is the error kind when nothing answered: rate_limit or quota when
// every failure was one, unavailable otherwise.
func (f *failures) kind() string {
	k := ""
	for _, c := range f.Class {
		switch {
		case k == "":
			k = c
		case k != c:
			return "unavailable"
		}
	}
	switch k {
	case string(provider.ClassRateLimit), string(provider.ClassQuota), string(provider.ClassAuth):
		return k
	}
	return "unavailable"
}

func permanent(kind, format string, args ...any) *runtime.Error {
	return &runtime.Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// scrubError makes sure no key resolved during the call appears in err.
func scrubError(err error, keys []string) error {
	var rt *runtime.Retry
	if errors.As(err, &rt) {
		if rt.Err != nil {
			rt.Err.Message = provider.Scrub(rt.Err.Message, keys...)
		}
		return rt
	}
	var re *runtime.Error
	if errors.As(err, &re) {
		re.Message = provider.Scrub(re.Message, keys...)
		return re
	}
	return err
}

// newCall checks a request and prepares its call. started anchors the
// default deadline; now is the call's clock.
func (m *Module) newCall(parent context.Context, req *Request, env *callEnv, now func() time.Time, started time.Time) (*callCtx, error) {
	name := req.Model
	if name == "" {
		name = "default"
	}
	a := m.aliases[name]
	if a == nil {
		return nil, permanent("unknown_model", "llm: no model alias %q in the configuration (%s); aliases: %s", name, m.cfg.Source, strings.Join(m.Aliases(), ", "))
	}
	cc := &callCtx{Context: parent, now: now, started: started, a: a, req: req, env: env}
	base := &cc.base
	base.Messages = cc.msgBuf[:0]
	if err := buildMessages(req, base); err != nil {
		return nil, err
	}
	if req.Schema != nil {
		var err error
		if cc.sch, err = m.schema(req.Schema); err != nil {
			return nil, err
		}
	}
	cc.deadline = req.Deadline
	if cc.deadline.IsZero() {
		cc.deadline = started.Add(a.cfg.Deadline)
	}
	cc.digest = requestDigest(name, base, req, cc.sch)
	for _, msg := range base.Messages {
		cc.estIn += provider.EstimateTokens(msg.Content)
	}
	cc.estIn += provider.EstimateTokens(base.System)
	cc.estCall = cc.estIn + req.MaxTokens
	if req.MaxTokens == 0 {
		cc.estCall += 256
	}
	tr := &cc.st.Trace
	tr.Alias, tr.Digest, tr.Attempts = name, cc.digest[:16], cc.attBuf[:0]
	return cc, nil
}

// resume continues from the state the previous round passed on.
func (cc *callCtx) resume(m *Module, st *routeState) {
	if st.Alias != "" && m.aliases[st.Alias] == nil {
		// The configuration changed while the run waited: start over on
		// the alias asked for, keeping what was tried.
		st.Alias, st.Round = "", 0
	}
	tr := cc.st.Trace
	cc.st = *st
	cc.st.Trace.Alias, cc.st.Trace.Digest = tr.Alias, tr.Digest
}

// idempotent returns the answer an earlier execution of this call already
// obtained (a crash came between the answer and its journal record).
func (cc *callCtx) idempotent(m *Module) *Result {
	if cc.req.Key == "" {
		return nil
	}
	r := m.idempotent(cc, cc.req.Key, cc.digest)
	if r != nil {
		cc.st.Trace.Outcome = "idempotent"
	}
	return r
}

// end completes the call's trace and makes sure its error holds no key.
func (cc *callCtx) end(err error) error {
	tr := &cc.st.Trace
	tr.TotalMS = cc.now().Sub(cc.started).Milliseconds()
	if err == nil {
		return nil
	}
	if tr.Outcome == "" && !isRetry(err) {
		tr.Outcome = "error"
	}
	return scrubError(err, cc.env.keys)
}

func isRetry(err error) bool {
	var retry *runtime.Retry
	return errors.As(err, &retry)
}

// finish turns how routing ended into the call's answer: the answer, a
// degraded one (cached, template), or the error.
func (m *Module) finish(cc *callCtx, res *Result, fail *routeFailure) (*Result, error) {
	tr := &cc.st.Trace
	a, name := cc.a, cc.a.cfg.Name
	if res != nil {
		if tr.Outcome == "" {
			tr.Outcome = "answered"
		}
		m.remember(cc, a, cc.req.Key, cc.digest, res, cc.env)
		return res, nil
	}
	if perr := cc.Err(); perr != nil {
		// The caller stopped (the run was interrupted): not an outcome.
		return nil, perr
	}
	if fail.degradable {
		attempts := fail.attempts
		if r := m.cachedAnswer(cc, a, cc.digest); r != nil {
			r.Cached, r.Degraded, r.Attempts, r.Refused = true, true, attempts, false
			tr.Outcome = "cached"
			cc.env.log.Warn().Str("model", name).Str("kind", fail.err.Kind).Msg("llm: every tier failed; serving a cached answer")
			return r, nil
		}
		if t := a.cfg.Template; t != nil {
			r := &Result{Text: *t, Model: name, Provider: "template", Deployment: "", Attempts: attempts, Degraded: true}
			if cc.sch != nil {
				js, verr := cc.sch.check(*t)
				if verr != nil {
					fail.err.Message += "; the template is not valid for the schema: " + verr.Error()
					return nil, fail.err
				}
				r.JSON = js
			}
			tr.Outcome = "template"
			cc.env.log.Warn().Str("model", name).Str("kind", fail.err.Kind).Msg("llm: every tier failed; serving the template answer")
			return r, nil
		}
		fail.err.Message += "; no cached answer"
		if m.kv == nil || a.cfg.CacheTTL <= 0 {
			fail.err.Message += " (caching is off)"
		}
		fail.err.Message += " and no template for model " + name
	}
	return nil, fail.err
}

// routeFailure is how routing ended without an answer.
type routeFailure struct {
	err        *runtime.Error
	degradable bool // a cached or template answer may stand in
	attempts   int
}

// roundWait is a wait routing asks for before its next round.
type roundWait struct {
	d      time.Duration
	reason string
	err    *runtime.Error // what the rounds so far came to
}

// rounds runs the fallback chain, one round after another, until a
// deployment answers, a failure ends the call, the rounds are used up, the
// deadline passes, or the next round must wait: rounds never waits. A
// round tries each deployment that can take the call at most once,
// failing over at once; a move to a context fallback starts a new round
// at once.
func (m *Module) rounds(cc *callCtx) (*Result, *routeFailure, *roundWait) {
	st, a := &cc.st, cc.a
	tr, fl := &st.Trace, &st.Failures
	cur := a
	if st.Alias != "" {
		cur = m.aliases[st.Alias]
	}
	policy := a.cfg.Retry.WithDefaults()
	env := cc.env
	fail := func(kind string, degradable bool, format string, args ...any) (*Result, *routeFailure, *roundWait) {
		return nil, &routeFailure{err: permanent(kind, format, args...), degradable: degradable, attempts: st.N}, nil
	}
	for !cc.over() {
		st.Round++
		round := st.Round
		reroute := false
		retryable := false
		attempted := false
		ctxSkips, otherSkips := 0, 0
	chain:
		for ti, t := range cur.chain {
			var tried []*member
			for {
				if cc.over() {
					break chain
				}
				mb, resv, skips := t.pick(cc.now(), cc.estIn, cc.estCall, tried)
				for _, s := range skips {
					tr.skip(ti+1, s)
					if s.context {
						ctxSkips++
					} else {
						otherSkips++
						fl.add(s.m.describe(), "skipped: "+s.why, "skipped")
					}
				}
				if mb == nil {
					break
				}
				tried = append(tried, mb)
				key, kerr := m.resolveKey(mb.prov, env)
				if kerr != nil {
					resv.release()
					why := "no key: " + kerr.Error()
					tr.skip(ti+1, skip{m: mb, why: why})
					fl.add(mb.describe(), why, string(provider.ClassAuth))
					otherSkips++
					env.log.Error().Bool("alert", true).Str("deployment", mb.cfg.Name).Str("key", mb.prov.APIKey.String()).Msg("llm: the deployment's API key is not available; skipping it")
					continue
				}
				done, berr := mb.st.breaker.Allow()
				if berr != nil {
					resv.release()
					tr.skip(ti+1, skip{m: mb, why: "circuit half-open: a probe is in flight"})
					otherSkips++
					continue
				}
				attempted = true
				res, aerr := m.attempt(cc, mb, key, ti+1, round, done)
				if aerr == nil {
					res.Tier, res.Attempts = ti+1, st.N
					return res, nil, nil
				}
				var ae *attemptError
				if !errors.As(aerr, &ae) {
					// Cancelled by the caller.
					return nil, &routeFailure{err: &runtime.Error{Kind: "cancelled", Message: aerr.Error()}, attempts: st.N}, nil
				}
				where := fmt.Sprintf("tier %d %s", ti+1, mb.describe())
				fl.add(mb.describe(), fmt.Sprintf("tier %d: %s", ti+1, ae.Error()), ae.class)
				switch provider.Class(ae.class) {
				case provider.ClassAuth, provider.ClassNotFound, provider.ClassBadRequest:
					hint := ""
					switch provider.Class(ae.class) {
					case provider.ClassAuth:
						hint = fmt.Sprintf(" — check the key in %s for provider %s", mb.prov.APIKey, mb.prov.Name)
					case provider.ClassNotFound:
						hint = fmt.Sprintf(" — check model %q of deployment %s", mb.cfg.Model, mb.cfg.Name)
					}
					env.log.Error().Bool("alert", true).Str("deployment", mb.cfg.Name).Str("class", ae.class).Str("error", provider.Scrub(ae.Error(), env.keys...)).Msg("llm: request rejected; not retrying")
					return fail(ae.class, false, "llm: model %q: %s rejected the request: %s%s (not retried)", a.cfg.Name, where, ae.Error(), hint)
				case provider.ClassContextLength:
					reroute = true
					break chain
				case provider.ClassRefusal:
					res, rf := m.refused(a, cur, mb, ae, cc.sch, ti+1, st.N, tr)
					return res, rf, nil
				case "invalid_output":
					return fail("invalid_output", false, "llm: model %q: %s: %s", a.cfg.Name, where, ae.Error())
				case provider.ClassQuota:
				default:
					retryable = true
				}
			}
		}
		if cc.over() {
			break
		}
		if reroute || (!attempted && ctxSkips > 0 && otherSkips == 0) {
			next := cur.cfg.ContextFallback
			if next == "" || st.Reroutes >= 3 || m.aliases[next] == nil {
				return fail(string(provider.ClassContextLength), false, "llm: model %q: the prompt (about %d tokens) is too long for model %s and it has no context_fallback: %s",
					a.cfg.Name, cc.estIn, cur.cfg.Name, fl.summary())
			}
			st.Reroutes++
			cur = m.aliases[next]
			st.Alias, st.Round = next, 0
			tr.ContextFallback = append(tr.ContextFallback, next)
			env.log.Info().Str("from", a.cfg.Name).Str("to", next).Msg("llm: prompt too long; moving to the context fallback")
			continue
		}
		if round >= policy.MaxAttempts {
			break
		}
		// Wait before the next round: the backoff, or until the first
		// deployment's cooldown or exhausted capacity ends if none can take
		// a call now.
		wait := policy.Delay(round, rand.Float64())
		reason := "backoff"
		now := cc.now()
		first, open := m.nextAvailable(cur, now, cc.estIn)
		if !retryable && (open || first.IsZero()) {
			// Nothing transient happened, and no deployment is waiting
			// out a cooldown or a rate-limit window: waiting changes
			// nothing.
			break
		}
		if !open {
			if d := first.Sub(now); d > wait {
				wait, reason = d, "until a deployment's cooldown or rate-limit window ends"
			}
		}
		if now.Add(wait).After(cc.deadline) {
			tr.wait(waitRecord{AfterRound: round, WaitMS: wait.Milliseconds(), Reason: "not waiting: the deadline comes first"})
			break
		}
		tr.wait(waitRecord{AfterRound: round, WaitMS: wait.Milliseconds(), Reason: reason})
		env.log.Debug().Str("model", a.cfg.Name).Int("round", round).Dur("wait", wait).Msg("llm: waiting before the next round")
		return nil, nil, &roundWait{d: wait, reason: reason, err: &runtime.Error{Kind: fl.kind(), Retryable: true,
			Message: fmt.Sprintf("llm: model %q: round %d: no deployment answered (%d attempts so far): %s; next round %s", a.cfg.Name, round, st.N, fl.summaryUpTo(400), reasonText(reason))}}
	}
	if cc.Err() == nil && (cc.expired || !cc.now().Before(cc.deadline)) {
		summary := fl.summary()
		if summary == "" {
			summary = "nothing was tried"
		}
		return fail("timeout", true, "llm: model %q: no answer before the deadline (%d attempts): %s", a.cfg.Name, st.N, summary)
	}
	if fl.N == 0 {
		return fail("unavailable", true, "llm: model %q: no deployment could take the call", a.cfg.Name)
	}
	kind := fl.kind()
	return fail(kind, kind != string(provider.ClassAuth), "llm: model %q: no deployment answered (%d attempts): %s", a.cfg.Name, st.N, fl.summary())
}

func reasonText(reason string) string {
	if reason == "backoff" {
		return "after the backoff"
	}
	return reason
}

// nextAvailable reports whether any member of the chain can take a call
// now, and if none can, the earliest time one's cooldown or exhausted
// capacity ends (zero if none is waiting for either).
func (m *Module) nextAvailable(a *alias, now time.Time, est int) (time.Time, bool) {
	var first time.Time
	for _, t := range a.chain {
		for _, mb := range t.members {
			if mb.st.unavailable(now, est, mb.cfg) == "" {
				return time.Time{}, true
			}
			if e := mb.st.earliest(now); !e.IsZero() && (first.IsZero() || e.Before(first)) {
				first = e
			}
		}
	}
	return first, false
}

// refused handles a content-policy refusal: the alias's safe response, or
// an error of kind "refusal" a script can route to a human.
// With a schema, a safe response that is valid JSON for it is also
// returned as json.
func (m *Module) refused(a, cur *alias, mb *member, ae *attemptError, sch *compiledSchema, tierN, n int, tr *trace) (*Result, *routeFailure) {
	safe := a.cfg.OnRefusal
	if safe == nil {
		safe = cur.cfg.OnRefusal
	}
	if safe != nil {
		tr.Outcome = "refused"
		r := &Result{Text: *safe, Model: mb.cfg.Model, Provider: mb.cfg.Provider, Deployment: mb.cfg.Name, Attempts: n, Tier: tierN, Refused: true}
		if sch != nil {
			if js, err := sch.check(*safe); err == nil {
				r.JSON = js
			}
		}
		return r, nil
	}
	said := ""
	if ae.perr != nil && ae.perr.Text != "" {
		said = fmt.Sprintf(" (it said: %q)", truncateText(ae.perr.Text, 200))
	}
	return nil, &routeFailure{err: permanent("refusal",
		"llm: model %q: %s refused to answer: %s%s; set on_refusal for the model to answer with a safe response, or catch kind \"refusal\" with attempt() and ask a human",
		a.cfg.Name, mb.describe(), ae.Error(), said), attempts: n}
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// attempt sends the request to one deployment, repairing invalid
// structured output up to the alias's limit. It reports the outcome to the
// deployment's breaker through done.
func (m *Module) attempt(cc *callCtx, mb *member, key string, tierN, round int, done func(error)) (*Result, error) {
	req, sch, tr, env := cc.req, cc.sch, &cc.st.Trace, cc.env
	cc.preq = cc.base
	preq := &cc.preq
	preq.Model = mb.cfg.Model
	preq.MaxTokens = req.MaxTokens
	preq.Temperature = req.Temperature
	preq.IdempotencyKey = req.Key
	if sch != nil {
		preq.Schema = sch.doc
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = mb.timeout
	}
	retries := mb.tierAlias().cfg.SchemaRetries
	var usage provider.Usage
	for repair := 0; ; repair++ {
		cc.st.N++
		if repair > 0 {
			// The first request was reserved when the deployment was picked.
			mb.st.begin(cc.now(), cc.estCall)
		}
		// The attempt's timeout, cut to what is left of the call's
		// deadline, runs in real time (the network's).
		limit, cut := timeout, false
		if left := cc.deadline.Sub(cc.now()); left < limit {
			limit, cut = max(left, 0), true
		}
		actx, cancel := context.WithTimeout(cc.Context, limit)
		t0 := m.latency()
		resp, err := mb.client.Complete(actx, preq, key)
		lat := m.latency().Sub(t0)
		cancel()
		rec := attemptRecord{N: cc.st.N, Round: round, Tier: tierN, Alias: mb.tierAlias().cfg.Name, Deployment: mb.cfg.Name, Provider: mb.cfg.Provider,
			Model: mb.cfg.Model, LatencyMS: lat.Milliseconds(), Repair: repair}
		if err != nil {
			var pe *provider.Error
			if !errors.As(err, &pe) {
				done(errBreakerExcluded)
				rec.Class, rec.Error = "cancelled", err.Error()
				tr.attempt(rec)
				return nil, err
			}
			pe.Message = provider.Scrub(pe.Message, append(env.keys, key)...)
			now := cc.now()
			mb.st.capacity(now, pe.RateLimit, pe.RetryAfter, m.cfg.Health.RateLimitCooldown)
			callDeadline := pe.Class == provider.ClassTimeout && cut
			if callDeadline {
				cc.expired = true // the call's deadline, not the deployment, cut it short
			} else {
				mb.st.failure(now, lat, pe, m.cfg.Health)
			}
			switch pe.Class {
			case provider.ClassServer, provider.ClassTimeout, provider.ClassNetwork, provider.ClassAuth, provider.ClassNotFound:
				if callDeadline {
					done(errBreakerExcluded)
				} else {
					done(errBreakerFailure)
				}
			default:
				done(errBreakerExcluded)
			}
			rec.Status, rec.Class, rec.Error, rec.RetryAfterMS = pe.Status, string(pe.Class), pe.Error(), pe.RetryAfter.Milliseconds()
			tr.attempt(rec)
			env.log.Info().Str("deployment", mb.cfg.Name).Int("status", pe.Status).Str("class", string(pe.Class)).Dur("latency", lat).Msg("llm: attempt failed")
			return nil, &attemptError{class: string(pe.Class), perr: pe}
		}
		now := cc.now()
		mb.st.capacity(now, resp.RateLimit, 0, m.cfg.Health.RateLimitCooldown)
		mb.st.success(now, lat, resp.Usage)
		usage.InputTokens += resp.Usage.InputTokens
		usage.OutputTokens += resp.Usage.OutputTokens
		var js json.RawMessage
		if sch != nil {
			var verr error
			js, verr = sch.check(resp.Text)
			if verr != nil {
				rec.Class, rec.Error = "invalid_output", verr.Error()
				tr.attempt(rec)
				if repair >= retries {
					done(errBreakerExcluded)
					return nil, &attemptError{class: "invalid_output", msg: fmt.Sprintf("the answer did not match the schema after %d repair attempts: %v", repair, verr)}
				}
				msgs := make([]provider.Message, 0, len(preq.Messages)+2)
				msgs = append(msgs, preq.Messages...)
				msgs = append(msgs,
					provider.Message{Role: "assistant", Content: resp.Text},
					provider.Message{Role: "user", Content: "That answer is not valid: " + verr.Error() + ". Reply again with only the JSON value, matching the schema."})
				preq.Messages = msgs
				if req.Key != "" {
					// A different body: a different idempotency key.
					preq.IdempotencyKey = fmt.Sprintf("%s/repair-%d", req.Key, repair+1)
				}
				continue
			}
		}
		tr.attempt(rec)
		done(nil)
		model := resp.Model
		if model == "" {
			model = mb.cfg.Model
		}
		cost := (float64(usage.InputTokens)*mb.cfg.InputPrice + float64(usage.OutputTokens)*mb.cfg.OutputPrice) / 1e6
		return &Result{Text: resp.Text, JSON: js, Model: model, Provider: mb.cfg.Provider, Deployment: mb.cfg.Name, Usage: usage, CostUSD: cost, LatencyMS: lat.Milliseconds()}, nil
	}
}

// tierAlias is the alias whose tier holds this member.
func (mb *member) tierAlias() *alias { return mb.alias }

// resolveKey reads a deployment's key at the moment of use.
func (m *Module) resolveKey(p *Provider, env *callEnv) (string, error) {
	var (
		key string
		err error
	)
	switch {
	case p.APIKey.Secret != "":
		if env.secret != nil {
			key, err = env.secret(runtime.Secret{Name: p.APIKey.Secret})
		} else {
			key, err = m.secrets(p.APIKey.Secret)
		}
	case p.APIKey.Env != "":
		key, err = m.secrets(p.APIKey.Env)
	default:
		return "", nil
	}
	if err != nil {
		if !p.Type.NeedsKey() {
			return "", nil
		}
		return "", fmt.Errorf("%s: %s", p.APIKey, provider.Scrub(err.Error(), key))
	}
	env.keys = append(env.keys, key)
	return key, nil
}

// buildMessages turns a Request into the provider-neutral conversation.
func buildMessages(req *Request, out *provider.Request) error {
	out.System = req.System
	for i, msg := range req.Messages {
		switch msg.Role {
		case "system":
			if out.System != "" {
				out.System += "\n\n"
			}
			out.System += msg.Content
		case "user", "assistant":
			out.Messages = append(out.Messages, msg)
		default:
			return permanent("invalid_argument", "llm: messages[%d]: role %q is not one of user, assistant, system", i, msg.Role)
		}
	}
	if req.Prompt != "" {
		out.Messages = append(out.Messages, provider.Message{Role: "user", Content: req.Prompt})
	}
	if len(out.Messages) == 0 {
		return permanent("invalid_argument", "llm: give a prompt, or messages with at least one user turn")
	}
	if out.Messages[len(out.Messages)-1].Role != "user" {
		return permanent("invalid_argument", "llm: the conversation must end with a user turn")
	}
	return nil
}

// requestDigest identifies a request for the response cache: the alias,
// the conversation and the parameters that change the answer.
func requestDigest(alias string, base *provider.Request, req *Request, sch *compiledSchema) string {
	buf := make([]byte, 0, 512)
	field := func(s string) {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	field(alias)
	field(base.System)
	for _, m := range base.Messages {
		field(m.Role)
		field(m.Content)
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(req.MaxTokens))
	if req.Temperature != nil {
		buf = strconv.AppendFloat(append(buf, 't'), *req.Temperature, 'g', -1, 64)
	}
	if sch != nil {
		field(sch.raw)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}
