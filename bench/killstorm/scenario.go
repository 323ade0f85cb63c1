package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stats are one scenario's numbers.
type stats struct {
	runs, correct    int
	kills            int // SIGKILLs sent by the storm
	completedRepeats int // requests for a call whose completion was journaled
	reexecuted       int // requests sent again for a call not journaled yet
	passed           int // calls sent again although the script had passed them
	passedByDesign   int // the same in exit mode, where it is expected
	quarantined      int // runs found quarantined (then released with retry)
	openFailures     int // processes that exited 6 (store unavailable)
	openCauses       map[string]int
	otherExits       int // other unexpected exits
	processes        int // starflow processes started
	earlyKills       int // run runner: `run` killed before the run existed
	wall             time.Duration
}

// scenario is one durability mode under one runner, with its own store.
type scenario struct {
	cfg     *config
	cnt     *counter
	scripts string
	mode    string
	runner  string
	db      string
	runs    []*runState

	mu        sync.Mutex
	st        stats
	findings  []string
	deadline  time.Time
	afterKill string // the store's files right after the last kill
}

// runState is what the storm knows about one run.
type runState struct {
	id, kind string
	input    json.RawMessage
	deaths   []time.Time // when a process executing it was killed (or died)
	kills    int
	finished bool
	gaveUp   string

	// serve runner
	posted bool // a start request succeeded since the last restart
	acked  bool // a start request was ever answered 200/201
}

func newScenario(cfg *config, cnt *counter, scripts, mode, runner string, index int) *scenario {
	sc := &scenario{cfg: cfg, cnt: cnt, scripts: scripts, mode: mode, runner: runner,
		db: filepath.Join(cfg.work, fmt.Sprintf("db-%s-%s", mode, runner))}
	per := cfg.runs
	if runner == "serve" {
		per = cfg.serveRuns
	}
	in, _ := json.Marshal(map[string]any{"url": cnt.url, "n": cfg.effects, "pause": cfg.pause.Seconds(), "nap": cfg.nap.Seconds()})
	// Interleave the scripts, so that every kind meets the whole storm.
	for j := 0; j < per; j++ {
		for _, kind := range scriptKinds {
			sc.runs = append(sc.runs, &runState{id: fmt.Sprintf("%s-%s-%s-%02d", mode, runner, kind, j), kind: kind, input: in})
		}
	}
	return sc
}

func (sc *scenario) finding(format string, args ...any) {
	msg := fmt.Sprintf("[%s %s] ", sc.mode, sc.runner) + fmt.Sprintf(format, args...)
	sc.mu.Lock()
	sc.findings = append(sc.findings, msg)
	sc.mu.Unlock()
	if sc.cfg.verbose {
		fmt.Fprintln(os.Stderr, "killstorm: finding:", msg)
	}
}

func (sc *scenario) logf(format string, args ...any) {
	if sc.cfg.verbose {
		fmt.Fprintf(os.Stderr, "killstorm: [%s %s] %s\n", sc.mode, sc.runner, fmt.Sprintf(format, args...))
	}
}

// rng returns the random source for name: the seed and the name decide
// every draw, whatever the other scenarios do meanwhile.
func (sc *scenario) rng(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(sc.cfg.seed, h.Sum64()))
}

func (sc *scenario) run() {
	start := time.Now()
	sc.deadline = start.Add(sc.cfg.timeout)
	if sc.runner == "run" {
		for _, r := range sc.runs {
			sc.driveCLI(r)
			sc.verify(r)
		}
	} else {
		sc.driveServe()
		for _, r := range sc.runs {
			sc.verify(r)
		}
	}
	sc.st.wall = time.Since(start)
}

// proc is a starflow process.
type proc struct {
	cmd    *exec.Cmd
	start  time.Time
	done   chan struct{}
	stdout capWriter
	stderr capWriter
	death  time.Time // when Wait returned
	code   int       // exit code; -1 if a signal ended it
	sig    syscall.Signal
}

func (sc *scenario) spawn(args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(sc.cfg.starflow, args...), done: make(chan struct{})}
	p.cmd.Dir = sc.scripts
	p.cmd.Env = cleanEnv()
	p.stdout.max = 64 << 20 // history --json of a run: keep it whole
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.start = time.Now()
	sc.mu.Lock()
	sc.st.processes++
	sc.mu.Unlock()
	go func() {
		p.cmd.Wait()
		p.death = time.Now().Round(0)
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.sig = ws.Signal()
		}
		close(p.done)
	}()
	return p, nil
}

// kill SIGKILLs p and waits for it; it reports whether the kill ended it
// (false if it had exited already).
func (p *proc) kill() bool {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return p.sig == syscall.SIGKILL
}

// cleanEnv is the environment without starflow's own variables: every
// setting is a flag.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STARFLOW_") {
			env = append(env, kv)
		}
	}
	return env
}

// result is how a starflow process ended.
type result struct {
	code           int
	killed         bool
	hung           bool
	death          time.Time
	stdout, stderr string
}

// starflow runs the command, SIGKILLing it after killAfter unless that
// is negative.
func (sc *scenario) starflow(killAfter time.Duration, args ...string) result {
	p, err := sc.spawn(args...)
	if err != nil {
		return result{code: -2, stderr: err.Error()}
	}
	var fire <-chan time.Time
	if killAfter >= 0 {
		t := time.NewTimer(killAfter - time.Since(p.start))
		defer t.Stop()
		fire = t.C
	}
	hang := time.NewTimer(2 * time.Minute)
	defer hang.Stop()
	res := result{}
	select {
	case <-p.done:
	case <-fire:
		res.killed = p.kill()
	case <-hang.C:
		p.kill()
		res.hung = true
	}
	<-p.done
	res.code, res.death = p.code, p.death
	res.stdout, res.stderr = p.stdout.String(), p.stderr.String()
	return res
}

// quiet runs a command that is not killed (show, history), retrying while
// the store is unavailable; every such failure is counted.
func (sc *scenario) quiet(what string, args ...string) result {
	for attempt := 0; ; attempt++ {
		res := sc.starflow(-1, args...)
		if res.code != 6 || attempt == 5 {
			return res
		}
		sc.openFailure(what, strings.Join(args, " "), res.stderr)
		time.Sleep(50 * time.Millisecond)
	}
}

func (sc *scenario) openFailure(what, cmd, stderr string) {
	now := storeFiles(sc.db)
	cause := openCause(stderr, sc.afterKill, now)
	sc.mu.Lock()
	sc.st.openFailures++
	if sc.st.openCauses == nil {
		sc.st.openCauses = map[string]int{}
	}
	sc.st.openCauses[cause]++
	sc.mu.Unlock()
	sc.finding("open failure (exit 6) in %s: starflow %s: %s [store files after the last kill: %s] [after the failed open: %s]",
		what, cmd, lastLines(stderr, 3), sc.afterKill, now)
}

var (
	memFailure  = regexp.MustCompile(`while opening memtables err: while opening fid: (\d+)`)
	vlogFailure = regexp.MustCompile(`Open existing file: "[^"]*?([0-9]+\.vlog)"`)
)

// openCause classifies a failed open: the file Badger could not open,
// and its size right after the last kill and now.
func openCause(stderr, afterKill, now string) string {
	var name, kind string
	if m := memFailure.FindStringSubmatch(stderr); m != nil {
		n, _ := strconv.Atoi(m[1])
		name, kind = fmt.Sprintf("%05d.mem", n), "memtable (.mem)"
	} else if m := vlogFailure.FindStringSubmatch(stderr); m != nil {
		name, kind = m[1], "value log (.vlog)"
	} else {
		return "other (see the findings)"
	}
	size := func(listing string) string {
		for _, f := range strings.Split(listing, ", ") {
			if n, sz, ok := strings.Cut(f, " "); ok && n == name {
				return sz
			}
		}
		return "absent"
	}
	before, after := size(afterKill), size(now)
	if before == "0" {
		return fmt.Sprintf("a zero-length %s file left by the kill (the failed open extended it: %v)", kind, after != "0" && after != "absent")
	}
	return fmt.Sprintf("a %s file of %s bytes after the kill", kind, before)
}

// storeFiles lists the files of a store with their sizes, to see what an
// open that failed found (a zero-length memtable, say).
func storeFiles(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var fs []string
	for _, e := range ents {
		if info, err := e.Info(); err == nil && !e.IsDir() {
			fs = append(fs, fmt.Sprintf("%s %d", e.Name(), info.Size()))
		}
	}
	return strings.Join(fs, ", ")
}

func (sc *scenario) otherExit(what string, res result, cmd string) {
	sc.mu.Lock()
	sc.st.otherExits++
	sc.mu.Unlock()
	sc.finding("unexpected exit %d in %s: starflow %s: %s", res.code, what, cmd, lastLines(res.stderr, 3))
}

// execArgs are the flags of every command that executes a run.
func (sc *scenario) execArgs() []string {
	return []string{"--db", sc.db, "--max-crashes", strconv.Itoa(sc.cfg.maxCrashes), "--max-wait", "200ms", "--log-format", "json", "--log-level", "warn"}
}

// driveCLI takes one run to its end with starflow run/resume/signal/
// answer processes, SIGKILLing them at random moments until its kill
// budget is spent.
func (sc *scenario) driveCLI(r *runState) {
	rng := sc.rng(r.id)
	budget := sc.cfg.killsMin + rng.IntN(sc.cfg.killsMax-sc.cfg.killsMin+1)
	next := "run"
	exists := false
	for !r.finished {
		if time.Now().After(sc.deadline) {
			r.gaveUp = "the scenario timed out (-timeout)"
			return
		}
		var args []string
		switch next {
		case "run":
			args = []string{"run", r.kind + ".star", "--id", r.id, "--durability", sc.mode, "--input", string(r.input)}
		case "resume", "retry":
			args = []string{next, r.id}
		case "signal":
			args = []string{"signal", r.id, "go", "--value", strconv.Quote(signalValue(r.id))}
		case "answer":
			args = []string{"answer", r.id, "--value", `"yes"`}
		}
		args = append(args, sc.execArgs()...)
		killAfter := time.Duration(-1)
		if budget > 0 {
			killAfter = sc.cfg.killAfter.draw(rng)
		}
		res := sc.starflow(killAfter, args...)
		cmd := strings.Join(args[:2], " ")
		if res.killed {
			budget--
			r.kills++
			r.deaths = append(r.deaths, res.death)
			sc.mu.Lock()
			sc.st.kills++
			sc.afterKill = storeFiles(sc.db)
			sc.mu.Unlock()
			sc.logf("%s: killed %s after %s", r.id, cmd, killAfter)
			next = "resume"
			continue
		}
		if res.hung {
			r.deaths = append(r.deaths, res.death)
			sc.finding("%s: starflow %s did not finish in 2 minutes; killed", r.id, cmd)
			next = "resume"
			continue
		}
		sc.logf("%s: %s exited %d", r.id, cmd, res.code)
		switch res.code {
		case 0:
			if (next == "signal" || next == "answer") && strings.TrimSpace(res.stdout) == "" {
				// signal/answer exit 0 without a result when they only
				// delivered the message: the run goes on.
				next = "resume"
				continue
			}
			r.finished = true
		case 3:
			exists = true
			next = sc.afterWait(r)
		case 6:
			sc.openFailure(r.id, strings.Join(args, " "), res.stderr)
			time.Sleep(20 * time.Millisecond)
		case 8:
			sc.mu.Lock()
			sc.st.quarantined++
			sc.mu.Unlock()
			sc.finding("%s quarantined (exit 8) by starflow %s with --max-crashes %d: %s", r.id, cmd, sc.cfg.maxCrashes, lastLines(res.stderr, 1))
			next = "retry"
		case 2:
			switch {
			case next == "resume" && !exists && strings.Contains(res.stderr, "no run with id"):
				// The first `run` was killed before it created the run.
				sc.mu.Lock()
				sc.st.earlyKills++
				sc.mu.Unlock()
				next = "run"
			case next == "signal" || next == "answer":
				// The run no longer waits for it (a killed delivery
				// that was stored): see what it does next.
				sc.finding("%s: starflow %s refused (exit 2): %s", r.id, cmd, lastLines(res.stderr, 1))
				next = "resume"
			default:
				sc.otherExit(r.id, res, strings.Join(args, " "))
				r.gaveUp = fmt.Sprintf("starflow %s exited 2", cmd)
				return
			}
		default:
			sc.otherExit(r.id, res, strings.Join(args, " "))
			if res.code == 1 || res.code == 4 || res.code == 5 {
				r.finished = true // finished, wrongly: verify says how
			} else {
				time.Sleep(50 * time.Millisecond)
				next = "resume"
			}
		}
	}
}

// afterWait decides how a waiting run continues: a timer is waited for
// (all but its last 150ms, which the resumed process waits in process), a
// signal or a question is answered by the process that delivers it.
func (sc *scenario) afterWait(r *runState) string {
	res := sc.quiet(r.id, "show", r.id, "--json", "--db", sc.db)
	var v struct {
		Status  string `json:"status"`
		Waiting *struct {
			Builtin string     `json:"builtin"`
			Until   *time.Time `json:"until"`
		} `json:"waiting"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil || v.Waiting == nil {
		sc.finding("%s: exit 3 but show --json says %q (%s)", r.id, v.Status, lastLines(res.stderr, 1))
		return "resume"
	}
	switch v.Waiting.Builtin {
	case "wait_signal":
		return "signal"
	case "ask_human":
		return "answer"
	}
	if v.Waiting.Until != nil {
		if d := time.Until(*v.Waiting.Until) - 150*time.Millisecond; d > 0 {
			time.Sleep(d)
		}
	}
	return "resume"
}

// verify checks a run once no process executes it.
func (sc *scenario) verify(r *runState) {
	sc.mu.Lock()
	sc.st.runs++
	sc.mu.Unlock()
	hist := sc.quiet("check "+r.id, "history", r.id, "--json", "--db", sc.db)
	show := sc.quiet("check "+r.id, "show", r.id, "--json", "--db", sc.db)
	var wrong []string
	if r.gaveUp != "" {
		wrong = append(wrong, "gave up: "+r.gaveUp)
	}
	evs, err := parseHistory(hist.stdout)
	if hist.code != 0 || err != nil {
		wrong = append(wrong, fmt.Sprintf("starflow history exited %d: %v %s", hist.code, err, lastLines(hist.stderr, 1)))
	}
	var s struct {
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	}
	if show.code != 0 || json.Unmarshal([]byte(show.stdout), &s) != nil {
		wrong = append(wrong, fmt.Sprintf("starflow show exited %d: %s", show.code, lastLines(show.stderr, 1)))
	}
	v := check(r.kind, r.id, sc.cfg.effects, evs, s.Status, s.Result, sc.cnt.requests(r.id), r.deaths)
	wrong = append(wrong, v.wrong...)
	sc.mu.Lock()
	sc.st.completedRepeats += len(v.completedRepeats)
	sc.st.reexecuted += v.reexecuted
	if sc.mode != "exit" {
		sc.st.passed += len(v.passed)
	} else {
		sc.st.passedByDesign += len(v.passed)
	}
	if len(wrong) == 0 {
		sc.st.correct++
	}
	sc.mu.Unlock()
	for _, w := range wrong {
		sc.finding("%s WRONG (%d kills): %s", r.id, r.kills, w)
	}
	for _, c := range v.completedRepeats {
		sc.finding("%s: completed step repeated: %s", r.id, c)
	}
	if sc.mode != "exit" {
		for _, p := range v.passed {
			sc.finding("%s: call the script had passed re-executed: %s", r.id, p)
		}
	}
}
