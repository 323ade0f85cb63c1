package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// expectedSteps is the step of effect i of a script of kind with n
// effects: each effect is an http.post and a sleep (two steps); the
// suspend, signal and human scripts have one more step (the long sleep,
// wait_signal, ask_human) after the first n/2 effects.
func expectedSteps(kind string, n int) []int {
	steps := make([]int, n)
	for i := range steps {
		steps[i] = 2*i + 1
		if kind != "chain" && i >= n/2 {
			steps[i]++
		}
	}
	return steps
}

// expectedResult is the result a run must end with.
func expectedResult(kind, id string, n int) map[string]any {
	var effects []any
	for i, s := range expectedSteps(kind, n) {
		effects = append(effects, map[string]any{"i": float64(i), "key": id + "/" + strconv.Itoa(s)})
	}
	res := map[string]any{"effects": effects}
	switch kind {
	case "signal":
		res["signal"] = signalValue(id)
	case "human":
		res["answer"] = "yes"
	}
	return res
}

func signalValue(id string) string { return "go-" + id }

// event is one line of `starflow history --json`.
type event struct {
	Seq     uint64          `json:"seq"`
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"`
	Step    string          `json:"step"`
	Builtin string          `json:"builtin"`
	Status  string          `json:"status"`
	Result  json.RawMessage `json:"result"`
}

func parseHistory(out string) ([]event, error) {
	var evs []event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			return nil, fmt.Errorf("history line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// verdict is what the checks found for one run.
type verdict struct {
	wrong []string // why the run is not correct (empty: correct)

	// completedRepeats are requests that arrived after the call's
	// completion had been journaled (the call.completed record in the
	// final journal is older than them): a completed step ran again.
	completedRepeats []string
	// reexecuted counts requests sent again for a call whose completion
	// was not journaled when the process died: the call in flight at a
	// kill (at-least-once), or, in exit mode, every call since the last
	// suspension.
	reexecuted int
	// passed are calls sent again after a kill although the run had sent
	// a later call before that kill, so the script had seen their result:
	// in sync and async modes their completion must have been journaled.
	passed []string
	// lost: an effect of the result that the counting server never saw,
	// or a call the final journal does not show as completed.
	lost []string
	// extra: requests under keys of this run that are not its effects.
	extra []string
}

// classify compares the effects the counting server saw (reqs, by key)
// with the final journal (completed: the time of each effect's
// call.completed record, by key) and the moments the processes executing
// the run died (deaths).
//
// A record in the final journal was written by a process before it died,
// so a request that arrived after that record's time ran a call whose
// completion was already journaled. Requests before it, beyond the first,
// re-executed a call whose completion was not journaled yet.
func classify(keys []string, completed map[string]time.Time, reqs map[string][]request, deaths []time.Time) verdict {
	var v verdict
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
		rs := reqs[k]
		t, ok := completed[k]
		switch {
		case len(rs) == 0:
			v.lost = append(v.lost, k+": no request reached the counting server")
		case !ok:
			v.lost = append(v.lost, k+": no call.completed in the final journal")
		}
		before := 0
		for _, r := range rs {
			if ok && r.at.After(t) {
				v.completedRepeats = append(v.completedRepeats, fmt.Sprintf("%s sent at %s, after its completion was journaled at %s", k, r.at.Format(tsFormat), t.Format(tsFormat)))
			} else {
				before++
			}
		}
		if before > 1 {
			v.reexecuted += before - 1
		}
	}
	for _, k := range sortedKeys(reqs) {
		if !want[k] {
			v.extra = append(v.extra, fmt.Sprintf("%s (%d requests)", k, len(reqs[k])))
		}
	}
	// All requests of the run in arrival order.
	type arrival struct {
		key string
		at  time.Time
	}
	var all []arrival
	for k, rs := range reqs {
		for _, r := range rs {
			all = append(all, arrival{k, r.at})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	for _, d := range deaths {
		// Requests before the death: the last one may have been in
		// flight; every earlier one had its result returned to the
		// script (which then sent a later call).
		n := sort.Search(len(all), func(i int) bool { return !all[i].at.Before(d) })
		if n == 0 {
			continue
		}
		last := all[n-1].key
		seen := map[string]bool{}
		for _, a := range all[:n] {
			if a.key == last || seen[a.key] {
				continue
			}
			seen[a.key] = true
			for _, b := range all[n:] {
				if b.key == a.key {
					v.passed = append(v.passed, fmt.Sprintf("%s sent again at %s after the kill at %s, although %s had been sent before the kill", a.key, b.at.Format(tsFormat), d.Format(tsFormat), last))
					break
				}
			}
		}
	}
	return v
}

const tsFormat = "15:04:05.000000"

// check verifies a finished run from its final journal (history), its
// status (show --json) and the counting server's requests.
func check(kind, id string, n int, history []event, status string, result json.RawMessage, reqs map[string][]request, deaths []time.Time) verdict {
	var finished []event
	completed := map[string]time.Time{}
	steps := expectedSteps(kind, n)
	keys := make([]string, len(steps))
	stepKey := map[string]string{}
	for i, s := range steps {
		keys[i] = id + "/" + strconv.Itoa(s)
		stepKey[strconv.Itoa(s)] = keys[i]
	}
	var badBuiltin []string
	for _, e := range history {
		switch e.Type {
		case "run.finished":
			finished = append(finished, e)
		case "call.completed":
			if k, ok := stepKey[e.Step]; ok {
				if e.Builtin != "http.post" {
					badBuiltin = append(badBuiltin, fmt.Sprintf("step %s is %s, want http.post", e.Step, e.Builtin))
				}
				if _, dup := completed[k]; dup {
					badBuiltin = append(badBuiltin, fmt.Sprintf("step %s completed twice in the journal", e.Step))
				}
				completed[k] = e.Time
			}
		}
	}
	v := classify(keys, completed, reqs, deaths)
	if len(finished) != 1 {
		v.wrong = append(v.wrong, fmt.Sprintf("history has %d run.finished records, want 1", len(finished)))
	}
	if status != "completed" {
		v.wrong = append(v.wrong, fmt.Sprintf("status %q, want completed", status))
	}
	if len(finished) > 0 && finished[len(finished)-1].Status != "completed" {
		v.wrong = append(v.wrong, fmt.Sprintf("run.finished says %q", finished[len(finished)-1].Status))
	}
	var got any
	if err := json.Unmarshal(result, &got); err != nil {
		v.wrong = append(v.wrong, fmt.Sprintf("result %q is not JSON: %v", result, err))
	} else if want := expectedResult(kind, id, n); !reflect.DeepEqual(normalize(got), normalize(want)) {
		w, _ := json.Marshal(want)
		v.wrong = append(v.wrong, fmt.Sprintf("result %s, want %s", result, w))
	}
	v.wrong = append(v.wrong, badBuiltin...)
	if len(v.lost) > 0 {
		v.wrong = append(v.wrong, fmt.Sprintf("%d effects lost: %s", len(v.lost), strings.Join(v.lost, "; ")))
	}
	if len(v.extra) > 0 {
		v.wrong = append(v.wrong, "requests under keys that are not the run's effects: "+strings.Join(v.extra, ", "))
	}
	return v
}

// normalize round-trips a value through JSON, so that values built in Go
// compare equal to decoded ones.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(b, &out)
	return out
}
