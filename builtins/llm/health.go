package llm

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"

	"github.com/starflow/starflow/builtins/llm/provider"
)

// state is the live health of one endpoint (provider, base URL, model):
// its circuit breaker, latency window, cooldown and capacity. Aliases that
// list the same endpoint share it. It is in-memory and per process: health
// is a live concern, never replayed.
type state struct {
	id       string
	name     string // the first deployment name that uses it
	provider string
	model    string
	region   string
	aliases  []string

	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]

	mu sync.Mutex
	// latency: a ring of the last samples
	lat        []time.Duration
	latN, latI int
	latSum     time.Duration
	lastSample time.Time
	// cooldown after a rate limit or exhausted quota
	coolUntil time.Time
	coolWhy   string
	// capacity from rate-limit headers, decremented locally between answers
	remReq, remTok int // -1 unknown
	limReq, limTok int // -1 unknown
	reqReset       time.Time
	tokReset       time.Time
	capGen         uint64 // counts capacity updates, so a reservation gives back only what is still its own
	// local per-minute counters (for rpm/tpm limits)
	winStart       time.Time
	winReq, winTok int

	calls, failures uint64
	lastErr         string
}

// Breaker outcomes: failures count against the deployment; excluded
// outcomes (rate limits, the caller's own mistakes, refusals) do not.
var (
	errBreakerFailure  = errors.New("deployment failure")
	errBreakerExcluded = errors.New("not the deployment's fault")
)

func newState(id, name, prov, model, region string, h HealthConfig, log zerolog.Logger) *state {
	s := &state{id: id, name: name, provider: prov, model: model, region: region,
		lat: make([]time.Duration, h.LatencyWindow), remReq: -1, remTok: -1, limReq: -1, limTok: -1}
	minReq, rate := uint32(h.MinRequests), h.FailureRate
	s.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  uint32(h.HalfOpenProbes),
		Interval:     h.Window,
		BucketPeriod: h.Window / 10,
		Timeout:      h.Cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			n := c.TotalSuccesses + c.TotalFailures
			return n >= minReq && float64(c.TotalFailures) > rate*float64(n)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errBreakerExcluded) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			ev := log.Info()
			if to == gobreaker.StateOpen {
				ev = log.Warn()
			}
			ev.Str("deployment", name).Str("from", from.String()).Str("to", to.String()).Msg("llm: circuit breaker")
		},
	})
	return s
}

// unavailable says why the endpoint cannot take a call now ("" if it can).
// est is the request's estimated token count; d holds the member's limits.
// It only looks: reserve takes the call.
func (s *state) unavailable(now time.Time, est int, d *Deployment) string {
	if s.breaker.State() == gobreaker.StateOpen {
		return "circuit open"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unavailableLocked(now, est, d)
}

// reserve takes a request from the endpoint's budgets if it can take one
// now, in the same step as the check, so concurrent calls never overrun an
// rpm limit or the remaining counts of the provider's headers. It says why
// not otherwise. est is the prompt's estimated tokens (checked against the
// budgets); estCall, the request's with its answer (taken from the
// remaining tokens). A reservation for a request that is not sent must be
// released.
func (s *state) reserve(now time.Time, est, estCall int, d *Deployment) (string, reservation) {
	if s.breaker.State() == gobreaker.StateOpen {
		return "circuit open", reservation{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if why := s.unavailableLocked(now, est, d); why != "" {
		return why, reservation{}
	}
	r := reservation{s: s, win: s.winStart, gen: s.capGen}
	s.calls++
	s.winReq++
	if s.remReq > 0 {
		s.remReq--
		r.req = 1
	}
	if s.remTok > 0 {
		r.tok = min(estCall, s.remTok)
		s.remTok -= r.tok
	}
	return "", r
}

// reservation is a request counted against an endpoint's budgets before it
// is sent.
type reservation struct {
	s        *state
	win      time.Time // the rpm window it was counted in
	gen      uint64    // the capacity update its remaining counts came from
	req, tok int       // taken from the remaining requests and tokens
}

// release gives back a reservation whose request was not sent: what is
// still counted in the same window and the same capacity update.
func (r reservation) release() {
	s := r.s
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls--
	if s.winStart.Equal(r.win) && s.winReq > 0 {
		s.winReq--
	}
	if s.capGen == r.gen {
		if r.req > 0 && s.remReq >= 0 {
			s.remReq += r.req
		}
		if r.tok > 0 && s.remTok >= 0 {
			s.remTok += r.tok
		}
	}
}

func (s *state) unavailableLocked(now time.Time, est int, d *Deployment) string {
	if now.Before(s.coolUntil) {
		return fmt.Sprintf("cooling down after %s (%s left)", s.coolWhy, s.coolUntil.Sub(now).Round(time.Millisecond))
	}
	if s.remReq == 0 && now.Before(s.reqReset) {
		return fmt.Sprintf("rate-limit headers say 0 requests left (resets in %s)", s.reqReset.Sub(now).Round(time.Millisecond))
	}
	if s.remTok >= 0 && s.remTok < est && now.Before(s.tokReset) {
		return fmt.Sprintf("rate-limit headers say %d tokens left, the request needs about %d (resets in %s)", s.remTok, est, s.tokReset.Sub(now).Round(time.Millisecond))
	}
	s.rollWindow(now)
	if d.RPM > 0 && s.winReq >= d.RPM {
		return fmt.Sprintf("rpm limit %d reached", d.RPM)
	}
	if d.TPM > 0 && s.winTok+est > d.TPM {
		return fmt.Sprintf("tpm limit %d reached (%d used this minute)", d.TPM, s.winTok)
	}
	return ""
}

func (s *state) rollWindow(now time.Time) {
	if now.Sub(s.winStart) >= time.Minute || now.Before(s.winStart) {
		s.winStart, s.winReq, s.winTok = now, 0, 0
	}
}

// earliest returns when the endpoint's cooldown or exhausted capacity ends
// (zero if it is not waiting for either).
func (s *state) earliest(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	later := func(x time.Time) {
		if x.After(now) && (t.IsZero() || x.After(t)) {
			t = x
		}
	}
	later(s.coolUntil)
	if s.remReq == 0 {
		later(s.reqReset)
	}
	return t
}

// headroom is the share of capacity left, from 0 to 1 (1 when unknown).
func (s *state) headroom(now time.Time, d *Deployment) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := 1.0
	frac := func(rem, lim int) {
		if rem >= 0 && lim > 0 {
			if f := float64(rem) / float64(lim); f < h {
				h = f
			}
		}
	}
	frac(s.remReq, s.limReq)
	frac(s.remTok, s.limTok)
	s.rollWindow(now)
	if d.RPM > 0 {
		frac(d.RPM-s.winReq, d.RPM)
	}
	if d.TPM > 0 {
		frac(d.TPM-s.winTok, d.TPM)
	}
	return h
}

// begin counts a request about to be sent without a reservation (a
// schema repair, which continues a request that had one).
func (s *state) begin(now time.Time, est int) {
	s.mu.Lock()
	s.calls++
	s.rollWindow(now)
	s.winReq++
	if s.remReq > 0 {
		s.remReq--
	}
	if s.remTok > 0 {
		s.remTok -= min(est, s.remTok)
	}
	s.mu.Unlock()
}

// capacity records what a response's rate-limit headers said. A budget
// refills at the reset time the headers give. The response's Retry-After
// (retryAfter, on a 429) wins over it: it says when to ask again. With
// neither, the budget refills after fallback (rate_limit_cooldown), never
// after an assumed window.
func (s *state) capacity(now time.Time, rl provider.RateLimit, retryAfter, fallback time.Duration) {
	if !rl.Known() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capGen++
	reset := func(d time.Duration) time.Time {
		switch {
		case retryAfter > 0:
			d = retryAfter
		case d <= 0:
			d = fallback
		}
		return now.Add(d)
	}
	if rl.RemainingRequests >= 0 {
		s.remReq, s.reqReset = rl.RemainingRequests, reset(rl.ResetRequests)
		s.limReq = rl.LimitRequests
	}
	if rl.RemainingTokens >= 0 {
		s.remTok, s.tokReset = rl.RemainingTokens, reset(rl.ResetTokens)
		s.limTok = rl.LimitTokens
	}
}

// success records an answer.
func (s *state) success(now time.Time, lat time.Duration, u provider.Usage) {
	s.mu.Lock()
	s.sample(now, lat)
	s.rollWindow(now)
	s.winTok += u.InputTokens + u.OutputTokens
	s.mu.Unlock()
}

// failure records a failed attempt and sets cooldowns.
func (s *state) failure(now time.Time, lat time.Duration, e *provider.Error, h HealthConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures++
	s.lastErr = e.Error()
	switch e.Class {
	case provider.ClassRateLimit:
		d := e.RetryAfter
		if d <= 0 {
			d = h.RateLimitCooldown
		}
		s.cool(now.Add(d), "a rate limit")
	case provider.ClassQuota:
		s.cool(now.Add(h.QuotaCooldown), "quota exhaustion")
	case provider.ClassTimeout, provider.ClassServer, provider.ClassNetwork:
		// Failures are penalised: they count as twice their duration, so a
		// failing deployment is measured (never "unmeasured, try first")
		// and drifts down the latency ranking.
		s.sample(now, 2*lat)
	}
}

func (s *state) cool(until time.Time, why string) {
	if until.After(s.coolUntil) {
		s.coolUntil, s.coolWhy = until, why
	}
}

func (s *state) sample(now time.Time, d time.Duration) {
	if s.latN == len(s.lat) {
		s.latSum -= s.lat[s.latI]
	} else {
		s.latN++
	}
	s.lat[s.latI] = d
	s.latSum += d
	s.latI = (s.latI + 1) % len(s.lat)
	s.lastSample = now
}

// meanLatency returns the window's mean and its sample count.
func (s *state) meanLatency() (time.Duration, int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latN == 0 {
		return 0, 0, s.lastSample
	}
	return s.latSum / time.Duration(s.latN), s.latN, s.lastSample
}

// DeploymentHealth is the live state of one endpoint, for a future
// `starflow providers` command and metrics.
type DeploymentHealth struct {
	Name     string   // the deployment's name (the first alias's, if shared)
	Provider string   // provider name from the configuration
	Model    string   // the provider's model name
	Region   string   //
	Aliases  []string // the aliases that route to it
	// Breaker is "closed", "open" or "half-open"; WindowRequests and
	// WindowFailures are its rolling-window counts.
	Breaker        string
	WindowRequests uint32
	WindowFailures uint32
	LatencyMean    time.Duration // over the last LatencySamples calls
	LatencySamples int
	CoolingDown    time.Duration // time left in a rate-limit or quota cooldown
	CooldownReason string
	// Remaining capacity from the last rate-limit headers; -1 unknown.
	RemainingRequests int
	RemainingTokens   int
	// Local counters for the current minute.
	RequestsThisMinute int
	TokensThisMinute   int
	Calls, Failures    uint64 // since the module started
	LastError          string
}

func (s *state) health(now time.Time) DeploymentHealth {
	c := s.breaker.Counts()
	h := DeploymentHealth{Name: s.name, Provider: s.provider, Model: s.model, Region: s.region, Aliases: append([]string(nil), s.aliases...),
		Breaker: s.breaker.State().String(), WindowRequests: c.Requests, WindowFailures: c.TotalFailures}
	h.LatencyMean, h.LatencySamples, _ = s.meanLatency()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.coolUntil) {
		h.CoolingDown, h.CooldownReason = s.coolUntil.Sub(now), s.coolWhy
	}
	h.RemainingRequests, h.RemainingTokens = s.remReq, s.remTok
	if now.Sub(s.winStart) < time.Minute {
		h.RequestsThisMinute, h.TokensThisMinute = s.winReq, s.winTok
	}
	h.Calls, h.Failures, h.LastError = s.calls, s.failures, s.lastErr
	return h
}

// Health reports the live state of every endpoint, sorted by name.
func (m *Module) Health() []DeploymentHealth {
	now := m.now()
	out := make([]DeploymentHealth, 0, len(m.states))
	for _, s := range m.states {
		out = append(out, s.health(now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
