package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// report prints the storm's header, summary table and findings; it says
// whether every check passed (open failures and other unexpected exits
// are reported but do not make a run wrong by themselves).
func report(w io.Writer, cfg *config, scs []*scenario, cnt *counter, wall time.Duration) bool {
	fmt.Fprintln(w, "killstorm: SIGKILL storm against starflow (bench/killstorm)")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "date:     %s\n", time.Now().UTC().Format("2006-01-02T15:04Z"))
	fmt.Fprintf(w, "machine:  %s\n", machine())
	fmt.Fprintf(w, "commit:   %s\n", gitCommit())
	fmt.Fprintf(w, "command:  %s\n", commandLine())
	fmt.Fprintf(w, "starflow: %s\n", cfg.starflowDesc)
	fmt.Fprintf(w, "seed:     %d (the same kill schedule again: -seed %d; what a kill hits still depends on timing)\n", cfg.seed, cfg.seed)
	fmt.Fprintf(w, "params:   -modes %s -runners %s -runs %d -serve-runs %d -effects %d -pause %s -nap %s\n",
		strings.Join(cfg.modes, ","), strings.Join(cfg.runners, ","), cfg.runs, cfg.serveRuns, cfg.effects, cfg.pause, cfg.nap)
	fmt.Fprintf(w, "          -kills-min %d -kills-max %d -kill-after %s -serve-life %s -serve-kills %d -stagger %d\n",
		cfg.killsMin, cfg.killsMax, cfg.killAfter.String(), cfg.serveLife.String(), cfg.serveKills, cfg.stagger)
	fmt.Fprintf(w, "          -max-crashes %d -effect-delay %s -parallel %d", cfg.maxCrashes, cfg.effectDelay, cfg.parallel)
	if len(cfg.serveArgs) > 0 {
		fmt.Fprintf(w, " -serve-args '%s'", strings.Join(cfg.serveArgs, " "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\trunner\truns\tSIGKILLs\tcorrect\tcompleted repeated\tre-executed\tpassed re-executed\tquarantined\topen failures\tother exits\tprocesses\twall\t")
	var tot stats
	ok := true
	for _, sc := range scs {
		s := sc.st
		passed := fmt.Sprint(s.passed)
		if sc.mode == "exit" {
			passed = fmt.Sprintf("(%d)", s.passedByDesign)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t\n", sc.mode, sc.runner, s.runs, s.kills, s.correct,
			s.completedRepeats, s.reexecuted, passed, s.quarantined, s.openFailures, s.otherExits, s.processes, s.wall.Round(time.Second))
		tot.runs += s.runs
		tot.kills += s.kills
		tot.correct += s.correct
		tot.completedRepeats += s.completedRepeats
		tot.reexecuted += s.reexecuted
		tot.passed += s.passed
		tot.quarantined += s.quarantined
		tot.openFailures += s.openFailures
		tot.otherExits += s.otherExits
		tot.processes += s.processes
		tot.earlyKills += s.earlyKills
		if s.correct != s.runs || s.completedRepeats != 0 || s.passed != 0 {
			ok = false
		}
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", tot.runs, tot.kills, tot.correct,
		tot.completedRepeats, tot.reexecuted, tot.passed, tot.quarantined, tot.openFailures, tot.otherExits, tot.processes, wall.Round(time.Second))
	tw.Flush()
	n, noKey, bad := cnt.total()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d effects received by the counting server", n)
	if noKey > 0 || bad > 0 {
		fmt.Fprintf(w, "; %d without an Idempotency-Key, %d malformed", noKey, bad)
		ok = false
	}
	fmt.Fprintf(w, "; %d `starflow run` processes killed before the run existed (then started again).\n", tot.earlyKills)
	if tot.openFailures > 0 {
		causes := map[string]int{}
		for _, sc := range scs {
			for c, n := range sc.st.openCauses {
				causes[c] += n
			}
		}
		fmt.Fprintf(w, "%d of %d store opens failed (exit 6):\n", tot.openFailures, tot.processes)
		for _, c := range sortedKeys(causes) {
			fmt.Fprintf(w, "  %4d  %s\n", causes[c], c)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, legend)
	fmt.Fprintln(w)
	var findings []string
	for _, sc := range scs {
		findings = append(findings, sc.findings...)
	}
	if len(findings) == 0 {
		fmt.Fprintln(w, "findings: none")
	} else {
		fmt.Fprintf(w, "findings (%d):\n", len(findings))
		for _, f := range findings {
			fmt.Fprintln(w, "  "+f)
		}
	}
	fmt.Fprintln(w)
	if ok {
		fmt.Fprintln(w, "verdict: every run correct; no completed step repeated; nothing lost")
	} else {
		fmt.Fprintln(w, "verdict: FAILED (see findings)")
	}
	return ok
}

const legend = `columns:
  SIGKILLs            kills sent by the storm (run: to the process executing the run; serve: to the server)
  correct             status completed, the expected result, every effect received, exactly one run.finished
  completed repeated  requests that arrived after their call's completion was journaled (must be 0)
  re-executed         requests sent again for a call whose completion was not journaled when the process
                      died: the call in flight at a kill (at-least-once, same Idempotency-Key); in exit
                      mode also every call since the last suspension, by design
  passed re-executed  sync/async: calls sent again after a kill although the script had already sent a
                      later call before that kill (so had their result): must be 0; in parentheses for
                      exit mode, where it happens by design (and shows that the check sees it)
  quarantined         runs found quarantined (exit 8 / status quarantined), then released with retry
  open failures       starflow processes that exited 6 (store unavailable), e.g. opening right after a kill
  other exits         any other unexpected exit code (the findings say which)
  processes           starflow processes started (run, resume, signal, answer, retry, show, history, serve):
                      each opens the store once
`
