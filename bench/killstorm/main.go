// Command killstorm SIGKILLs starflow processes at random moments, many
// times per run, under every durability mode, both as `starflow run`
// processes and under `starflow serve`, and checks every run afterwards:
// the right final status and result, exactly one run.finished, no call
// whose completion was journaled sent again, nothing lost. It prints a
// summary table and every finding. See README.md.
//
//	go run ./bench/killstorm                 # defaults: over 1,000 SIGKILLs
//	go run ./bench/killstorm -seed 42        # the same kill schedule again
//
// It is a bench program, not part of the starflow binary: it drives the
// real binary (built from ./cmd/starflow, or -starflow PATH) as a black box
// and counts effects with a loopback HTTP server that records the
// Idempotency-Key of every request the http builtin sends.
package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

//go:embed scripts/*.star
var scriptFS embed.FS

// scriptKinds are the workflows every scenario runs, in this order.
var scriptKinds = []string{"chain", "suspend", "signal", "human"}

type config struct {
	starflow     string
	starflowDesc string // where the binary came from, for the report
	work         string
	keep         bool
	seed         uint64
	modes        []string
	runners      []string
	parallel     int
	runs         int
	serveRuns    int
	effects      int
	pause        time.Duration
	nap          time.Duration
	killsMin     int
	killsMax     int
	killAfter    durRange
	serveLife    durRange
	serveKills   int
	stagger      int
	maxCrashes   int
	serveArgs    []string
	effectDelay  time.Duration
	timeout      time.Duration
	verbose      bool
}

// durRange is a flag "MIN,MAX" of durations; draws are uniform in it.
type durRange struct{ min, max time.Duration }

func (d *durRange) String() string { return d.min.String() + "," + d.max.String() }
func (d *durRange) Set(s string) error {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return errors.New("want MIN,MAX")
	}
	lo, err := time.ParseDuration(strings.TrimSpace(a))
	if err != nil {
		return err
	}
	hi, err := time.ParseDuration(strings.TrimSpace(b))
	if err != nil {
		return err
	}
	if lo < 0 || hi < lo {
		return errors.New("want 0 <= MIN <= MAX")
	}
	d.min, d.max = lo, hi
	return nil
}

func (d durRange) draw(r *rand.Rand) time.Duration {
	if d.max == d.min {
		return d.min
	}
	return d.min + time.Duration(r.Int64N(int64(d.max-d.min)))
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "killstorm:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg))
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{
		killAfter: durRange{5 * time.Millisecond, 300 * time.Millisecond},
		serveLife: durRange{50 * time.Millisecond, 700 * time.Millisecond},
	}
	fs := flag.NewFlagSet("killstorm", flag.ContinueOnError)
	var modes, runners, serveArgs string
	var seed int64
	fs.StringVar(&cfg.starflow, "starflow", "", "starflow binary to test (default: build ./cmd/starflow of this module)")
	fs.StringVar(&cfg.work, "work", "", "work directory for the stores, scripts and binary (default: a new temporary directory)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the work directory (it is kept anyway when there are findings)")
	fs.Int64Var(&seed, "seed", 0, "seed of the kill schedule (default: from the clock; printed)")
	fs.StringVar(&modes, "modes", "sync,async,exit", "durability modes")
	fs.StringVar(&runners, "runners", "run,serve", "runners: run (starflow run/resume/signal/answer processes), serve (starflow serve)")
	fs.IntVar(&cfg.parallel, "parallel", 2, "scenarios (mode x runner) at once")
	fs.IntVar(&cfg.runs, "runs", 10, "runs of each script per run-runner scenario")
	fs.IntVar(&cfg.serveRuns, "serve-runs", 16, "runs of each script per serve scenario")
	fs.IntVar(&cfg.effects, "effects", 20, "effects (http.post calls) per run")
	fs.DurationVar(&cfg.pause, "pause", 30*time.Millisecond, "sleep after each effect")
	fs.DurationVar(&cfg.nap, "nap", time.Second, "the suspend script's long sleep (longer than --max-wait: the run suspends)")
	fs.IntVar(&cfg.killsMin, "kills-min", 6, "run runner: fewest SIGKILLs aimed at one run")
	fs.IntVar(&cfg.killsMax, "kills-max", 16, "run runner: most SIGKILLs aimed at one run (each run draws its budget; a process that exits before its kill time uses none)")
	fs.Var(&cfg.killAfter, "kill-after", "run runner: a process is SIGKILLed this long after it starts, drawn uniformly (MIN,MAX)")
	fs.Var(&cfg.serveLife, "serve-life", "serve runner: a server is SIGKILLed this long after it starts, drawn uniformly (MIN,MAX)")
	fs.IntVar(&cfg.serveKills, "serve-kills", 150, "serve runner: SIGKILLs per scenario, at most (killing stops when every run has finished)")
	fs.IntVar(&cfg.stagger, "stagger", 1, "serve runner: runs started per server lifetime (spreads the runs over the storm)")
	fs.IntVar(&cfg.maxCrashes, "max-crashes", 0, "--max-crashes for run/resume/signal/answer and serve (0: never quarantine)")
	fs.StringVar(&serveArgs, "serve-args", "", "extra arguments for starflow serve, space-separated")
	fs.DurationVar(&cfg.effectDelay, "effect-delay", 5*time.Millisecond, "the counting server answers each effect after up to this long (widens the window in which a kill finds a call in flight)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up on a scenario after this long")
	fs.BoolVar(&cfg.verbose, "v", false, "log every process and kill to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.seed = uint64(seed)
	if seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano()%1_000_000_000) + 1
	}
	for _, m := range strings.Split(modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "sync", "async", "exit":
			cfg.modes = append(cfg.modes, m)
		case "":
		default:
			return nil, fmt.Errorf("-modes: unknown mode %q", m)
		}
	}
	for _, r := range strings.Split(runners, ",") {
		switch r = strings.TrimSpace(r); r {
		case "run", "serve":
			cfg.runners = append(cfg.runners, r)
		case "":
		default:
			return nil, fmt.Errorf("-runners: unknown runner %q", r)
		}
	}
	cfg.serveArgs = strings.Fields(serveArgs)
	switch {
	case cfg.effects < 2:
		return nil, errors.New("-effects must be at least 2")
	case cfg.killsMin < 0 || cfg.killsMax < cfg.killsMin:
		return nil, errors.New("want 0 <= -kills-min <= -kills-max")
	case cfg.parallel < 1 || cfg.stagger < 1:
		return nil, errors.New("-parallel and -stagger must be at least 1")
	}
	return cfg, nil
}

func run(cfg *config) int {
	started := time.Now()
	if cfg.work == "" {
		d, err := os.MkdirTemp("", "killstorm-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "killstorm:", err)
			return 1
		}
		cfg.work = d
	}
	scripts := filepath.Join(cfg.work, "scripts")
	if err := writeScripts(scripts); err != nil {
		fmt.Fprintln(os.Stderr, "killstorm:", err)
		return 1
	}
	if cfg.starflow == "" {
		bin := filepath.Join(cfg.work, "starflow")
		fmt.Fprintln(os.Stderr, "killstorm: building ./cmd/starflow")
		if err := buildStarflow(bin); err != nil {
			fmt.Fprintln(os.Stderr, "killstorm:", err)
			return 1
		}
		cfg.starflow = bin
		cfg.starflowDesc = "built from ./cmd/starflow of the commit above"
	} else {
		if abs, err := filepath.Abs(cfg.starflow); err == nil {
			cfg.starflow = abs
		}
		cfg.starflowDesc = cfg.starflow
	}
	if out, err := exec.Command(cfg.starflow, "version").Output(); err == nil {
		cfg.starflowDesc += " (" + strings.TrimSpace(string(out)) + ")"
	}

	cnt, err := startCounter(cfg.effectDelay)
	if err != nil {
		fmt.Fprintln(os.Stderr, "killstorm:", err)
		return 1
	}
	defer cnt.close()

	var scs []*scenario
	for _, mode := range cfg.modes {
		for _, runner := range cfg.runners {
			scs = append(scs, newScenario(cfg, cnt, scripts, mode, runner, len(scs)))
		}
	}
	fmt.Fprintf(os.Stderr, "killstorm: seed %d, %d scenarios, work directory %s\n", cfg.seed, len(scs), cfg.work)
	sem := make(chan struct{}, cfg.parallel)
	var wg sync.WaitGroup
	for _, sc := range scs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sc.run()
			fmt.Fprintf(os.Stderr, "killstorm: %-5s %-5s done: %d runs, %d SIGKILLs, %d correct, %s\n",
				sc.mode, sc.runner, sc.st.runs, sc.st.kills, sc.st.correct, sc.st.wall.Round(time.Second))
		}()
	}
	wg.Wait()

	ok := report(os.Stdout, cfg, scs, cnt, time.Since(started))
	findings := 0
	for _, sc := range scs {
		findings += len(sc.findings)
	}
	if !ok || cfg.keep || findings > 0 {
		fmt.Fprintln(os.Stderr, "killstorm: work directory kept:", cfg.work)
	} else {
		os.RemoveAll(cfg.work)
	}
	if !ok {
		return 1
	}
	return 0
}

func writeScripts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := scriptFS.ReadDir("scripts")
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := scriptFS.ReadFile("scripts/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// buildStarflow builds ./cmd/starflow of the module the current directory
// is in.
func buildStarflow(bin string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("run killstorm inside the starflow module, or pass -starflow PATH")
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/starflow")
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/starflow: %v\n%s", err, stderr.String())
	}
	return nil
}

// machine describes this machine in one line.
func machine() string {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				fmt.Sscanf(strings.TrimPrefix(l, "MemTotal:"), "%d", &kb)
			}
		}
		mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
	}
	kernel := ""
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		kernel = ", " + strings.TrimSpace(string(out))
	}
	s := fmt.Sprintf("%d vCPU%s%s, %s", runtime.NumCPU(), mem, kernel, runtime.Version())
	if cpu != "" {
		s += " (" + cpu + ")"
	}
	return s
}

// gitCommit is the commit of the working tree, marked if it has changes.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// commandLine is how this storm was started, as a command to type.
func commandLine() string {
	parts := []string{"go", "run", "./bench/killstorm"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// capWriter keeps the last max bytes written to it.
type capWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.max == 0 {
		w.max = 16 << 10 // stderr: its end says why a process failed
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-w.max:]...)
	}
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// lastLines is the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	var ls []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	out := strings.Join(ls, " | ")
	if len(out) > 600 {
		out = out[:600] + "…"
	}
	return out
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var _ io.Writer = (*capWriter)(nil)
