package llm

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starflow/starflow/builtins/llm/provider"
)

func oneTier(t *testing.T, deployment string) *tier {
	t.Helper()
	cfg, err := ParseConfig("t.yaml", []byte("providers:\n  sim: {type: fake}\nmodels:\n  default:\n    deployments:\n      - "+deployment+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return m.aliases["default"].tiers[0]
}

// Checking that a deployment can take a call and counting the call are
// one step: concurrent picks never overrun an rpm limit.
func TestPickReservesAtomically(t *testing.T) {
	tr := oneTier(t, "{name: a, provider: sim, model: m, rpm: 10}")
	now := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if mb, _, _ := tr.pick(now, 10, 20, nil); mb != nil {
				mu.Lock()
				got++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got != 10 {
		t.Fatalf("%d of 50 concurrent picks got the deployment; its rpm limit is 10", got)
	}
	mb, _, skips := tr.pick(now, 10, 20, nil)
	if mb != nil || len(skips) != 1 || !strings.Contains(skips[0].why, "rpm limit 10") {
		t.Fatalf("an 11th pick: %v %+v", mb, skips)
	}
}

// The remaining counts of the provider's headers are reserved the same
// way, and a released reservation gives its share back.
func TestPickReservesRemainingRequestsAndTokens(t *testing.T) {
	tr := oneTier(t, "{name: a, provider: sim, model: m}")
	st := tr.members[0].st
	now := time.Now()
	st.capacity(now, provider.RateLimit{Present: true, LimitRequests: 10, RemainingRequests: 2, LimitTokens: 1000, RemainingTokens: 1000,
		ResetRequests: time.Minute, ResetTokens: time.Minute}, 0, 5*time.Second)
	mb, r1, _ := tr.pick(now, 10, 20, nil)
	if mb == nil {
		t.Fatal("first pick failed")
	}
	if mb, _, _ := tr.pick(now, 10, 20, nil); mb == nil {
		t.Fatal("second pick failed")
	}
	if mb, _, skips := tr.pick(now, 10, 20, nil); mb != nil || !strings.Contains(skips[0].why, "0 requests left") {
		t.Fatalf("a third pick with 2 requests remaining: %v %+v", mb, skips)
	}
	r1.release()
	if mb, _, _ := tr.pick(now, 10, 20, nil); mb == nil {
		t.Fatal("a released reservation did not give its request back")
	}

	st.capacity(now, provider.RateLimit{Present: true, LimitRequests: 10, RemainingRequests: 10, LimitTokens: 1000, RemainingTokens: 100,
		ResetRequests: time.Minute, ResetTokens: time.Minute}, 0, 5*time.Second)
	if mb, _, _ := tr.pick(now, 60, 60, nil); mb == nil {
		t.Fatal("60 of 100 tokens")
	}
	if mb, _, skips := tr.pick(now, 60, 60, nil); mb != nil || !strings.Contains(skips[0].why, "tokens left") {
		t.Fatalf("another 60 of the 40 tokens left: %v %+v", mb, skips)
	}
}
