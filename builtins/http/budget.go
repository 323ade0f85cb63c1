package http

import (
	"fmt"
	"strings"
	"sync"
)

// Budget configures the per-host retry budget: a token bucket per host, as
// in the AWS SDK's standard retryer. Every retry takes RetryCost tokens
// (TimeoutCost after a timeout); a call that gets an answer (any response
// that is not a transient failure) puts back Refund tokens, plus the cost
// of the retry that led to it. When a host's bucket cannot pay for a
// retry, calls to it fail at once instead of retrying (kind
// retry_budget): a failing host gets one attempt per call, not four,
// until successes refill its bucket. Zero fields take the defaults.
type Budget struct {
	Capacity    int // tokens per host; default 500; negative disables the budget
	RetryCost   int // default 5
	TimeoutCost int // default 10
	Refund      int // default 1
}

// DefaultBudget returns the AWS SDK defaults: 500 tokens, a retry costs 5
// (10 after a timeout), an answered call refunds 1.
func DefaultBudget() Budget {
	return Budget{Capacity: 500, RetryCost: 5, TimeoutCost: 10, Refund: 1}
}

func (b Budget) withDefaults() (Budget, error) {
	d := DefaultBudget()
	if b.Capacity == 0 {
		b.Capacity = d.Capacity
	}
	if b.RetryCost == 0 {
		b.RetryCost = d.RetryCost
	}
	if b.TimeoutCost == 0 {
		b.TimeoutCost = d.TimeoutCost
	}
	if b.Refund == 0 {
		b.Refund = d.Refund
	}
	if b.RetryCost < 0 || b.TimeoutCost < 0 || b.Refund < 0 {
		return b, fmt.Errorf("http: Budget costs and refund must not be negative")
	}
	return b, nil
}

// budgets holds the buckets. A host that has spent nothing has no entry,
// so the map only grows with hosts that fail.
type budgets struct {
	cfg   Budget
	mu    sync.Mutex
	spent map[string]int
}

func newBudgets(cfg Budget) *budgets {
	return &budgets{cfg: cfg, spent: map[string]int{}}
}

// take spends cost tokens of host's bucket, if it holds them.
func (b *budgets) take(host string, cost int) bool {
	if b.cfg.Capacity < 0 {
		return true
	}
	host = strings.ToLower(host)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg.Capacity-b.spent[host] < cost {
		return false
	}
	b.spent[host] += cost
	return true
}

// refund puts n tokens back into host's bucket.
func (b *budgets) refund(host string, n int) {
	if b.cfg.Capacity < 0 || n <= 0 {
		return
	}
	host = strings.ToLower(host)
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.spent[host]; ok {
		if s <= n {
			delete(b.spent, host)
		} else {
			b.spent[host] = s - n
		}
	}
}

// available returns the tokens in host's bucket.
func (b *budgets) available(host string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg.Capacity - b.spent[strings.ToLower(host)]
}
