package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/starflow/starflow/journal"
)

// Tally counts, from runs' journals, how the http and llm builtins coped
// with faults: the retries they made, the llm calls answered by a fallback
// deployment, the degraded (cached or template) answers, and the calls
// that failed anyway. `starflow test --chaos` reports it beside the
// Injector's Summary.
type Tally struct {
	HTTPCalls   int
	HTTPRetries int // attempts after the first, over all http calls
	HTTPFailed  int

	LLMCalls     int
	LLMRetries   int // provider requests after the first, over all llm calls
	LLMFallbacks int // calls answered by another deployment than the first one tried
	LLMDegraded  int // calls answered from the cache or the template
	LLMFailed    int

	Failed map[string]int // failed calls by error kind
}

// httpDetail and llmDetail are the parts of the builtins' journal details
// (spec/http.md, spec/llm.md) that a tally reads.
type httpDetail struct {
	Attempts []struct{} `json:"attempts"`
}

type llmDetail struct {
	Attempts []struct {
		Deployment string `json:"deployment"`
		Tier       int    `json:"tier"`
		Class      string `json:"class"`
	} `json:"attempts"`
	AttemptsOmitted int    `json:"attempts_omitted"` // requests a long call's detail leaves out
	Outcome         string `json:"outcome"`
}

// AddRecords counts the completed http and llm calls in one run's journal
// records (journal.Store.Records).
func (t *Tally) AddRecords(recs []journal.Record) error {
	builtin := map[string]string{}
	for _, r := range recs {
		switch r.Type {
		case journal.TypeCallStarted:
			var cs journal.CallStarted
			if err := r.Decode(&cs); err != nil {
				return err
			}
			builtin[cs.Step] = cs.Builtin
		case journal.TypeCallCompleted:
			var cc journal.CallCompleted
			if err := r.Decode(&cc); err != nil {
				return err
			}
			t.add(builtin[cc.Step], &cc)
		}
	}
	return nil
}

func (t *Tally) add(b string, cc *journal.CallCompleted) {
	failed := cc.Error != nil
	switch {
	case strings.HasPrefix(b, "http."):
		t.HTTPCalls++
		var d httpDetail
		_ = json.Unmarshal(cc.Detail, &d)
		if len(d.Attempts) > 1 {
			t.HTTPRetries += len(d.Attempts) - 1
		}
		if failed {
			t.HTTPFailed++
		}
	case b == "llm":
		t.LLMCalls++
		var d llmDetail
		_ = json.Unmarshal(cc.Detail, &d)
		if n := len(d.Attempts) + d.AttemptsOmitted; n > 1 {
			t.LLMRetries += n - 1
		}
		switch d.Outcome {
		case "cached", "template":
			t.LLMDegraded++
		case "answered":
			if n := len(d.Attempts); n > 0 {
				last := d.Attempts[n-1]
				if last.Class == "" && (last.Deployment != d.Attempts[0].Deployment || last.Tier != d.Attempts[0].Tier) {
					t.LLMFallbacks++
				}
			}
		}
		if failed {
			t.LLMFailed++
		}
	default:
		return
	}
	if failed {
		if t.Failed == nil {
			t.Failed = map[string]int{}
		}
		t.Failed[cc.Error.Kind]++
	}
}

// String renders the tally for a report.
func (t Tally) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "http: %d calls, %d retries, %d failed\n", t.HTTPCalls, t.HTTPRetries, t.HTTPFailed)
	fmt.Fprintf(&b, "llm:  %d calls, %d retries, %d answered by a fallback, %d degraded, %d failed\n",
		t.LLMCalls, t.LLMRetries, t.LLMFallbacks, t.LLMDegraded, t.LLMFailed)
	if len(t.Failed) > 0 {
		kinds := make([]string, 0, len(t.Failed))
		for k := range t.Failed {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for i, k := range kinds {
			kinds[i] = fmt.Sprintf("%s: %d", k, t.Failed[k])
		}
		fmt.Fprintf(&b, "failed calls by kind: %s\n", strings.Join(kinds, ", "))
	}
	return b.String()
}
