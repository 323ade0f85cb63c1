package runtime

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// RetryPolicy is starflow's one retry policy type: exponential backoff with
// jitter, a bound on attempts, and error kinds that are never retried. The
// runtime applies it to host builtins; the http and llm builtins drive
// their clients with it.
//
// The wait before attempt n+1 is
//
//	min(InitialInterval * BackoffCoefficient^(n-1), MaxInterval) * (1 ± Jitter)
//
// unless the failure carried a server-requested wait (Error.RetryAfter),
// which is used instead when it is longer.
type RetryPolicy struct {
	MaxAttempts        int           // total tries including the first; default 4
	InitialInterval    time.Duration // default 1s
	BackoffCoefficient float64       // default 2.0
	MaxInterval        time.Duration // default 30s
	Jitter             float64       // fraction, 0.2 means ±20%; default 0.2; negative disables
	NonRetryable       []string      // Error.Kind values never retried
}

// DefaultRetryPolicy returns the defaults: 4 attempts, 1s initial interval,
// coefficient 2.0, 30s cap, ±20% jitter.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, InitialInterval: time.Second, BackoffCoefficient: 2.0, MaxInterval: 30 * time.Second, Jitter: 0.2}
}

// WithDefaults returns p with zero fields replaced by the defaults.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.InitialInterval == 0 {
		p.InitialInterval = d.InitialInterval
	}
	if p.BackoffCoefficient == 0 {
		p.BackoffCoefficient = d.BackoffCoefficient
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = d.MaxInterval
	}
	if p.Jitter == 0 {
		p.Jitter = d.Jitter
	} else if p.Jitter < 0 {
		p.Jitter = 0
	}
	return p
}

// Validate reports a policy that cannot work.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("retry policy: max_attempts %d is negative", p.MaxAttempts)
	case p.InitialInterval < 0:
		return fmt.Errorf("retry policy: initial interval %s is negative", p.InitialInterval)
	case p.BackoffCoefficient != 0 && p.BackoffCoefficient < 1:
		return fmt.Errorf("retry policy: backoff coefficient %g is below 1", p.BackoffCoefficient)
	case p.MaxInterval < 0:
		return fmt.Errorf("retry policy: max interval %s is negative", p.MaxInterval)
	case p.Jitter > 1:
		return fmt.Errorf("retry policy: jitter %g is above 1 (it is a fraction: 0.2 means ±20%%)", p.Jitter)
	}
	return nil
}

// Backoff returns the wait after failed attempt n (1-based), before jitter.
func (p RetryPolicy) Backoff(n int) time.Duration {
	p = p.WithDefaults()
	d := float64(p.InitialInterval) * math.Pow(p.BackoffCoefficient, float64(n-1))
	if d > float64(p.MaxInterval) || math.IsInf(d, 0) {
		return p.MaxInterval
	}
	return time.Duration(d)
}

// Delay returns the jittered wait after failed attempt n. rnd is a number
// in [0, 1); pass rand.Float64() (jitter needs no determinism: waits are
// not journaled as results).
func (p RetryPolicy) Delay(n int, rnd float64) time.Duration {
	p = p.WithDefaults()
	d := float64(p.Backoff(n))
	if p.Jitter > 0 {
		d *= 1 + p.Jitter*(2*rnd-1)
	}
	return time.Duration(d)
}

// ShouldRetry reports whether a failure of the given classification, after
// attempt n, deserves another attempt.
func (p RetryPolicy) ShouldRetry(e *Error, n int) bool {
	p = p.WithDefaults()
	if n >= p.MaxAttempts || !e.Retryable {
		return false
	}
	return !slices.Contains(p.NonRetryable, e.Kind)
}

// wait computes the pause before the next attempt, honouring a longer
// server-requested wait.
func (p RetryPolicy) wait(e *Error, n int) time.Duration {
	d := p.Delay(n, rand.Float64())
	if e.RetryAfter > d {
		d = e.RetryAfter
	}
	return d
}
