package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"go.starlark.net/starlark"

	"github.com/starflow/starflow/chaos"
	"github.com/starflow/starflow/internal/errtext"
	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	"github.com/starflow/starflow/runtime"
)

func init() {
	register(command{name: "test", summary: "crash a workflow at every call boundary and check it recovers", run: (*Main).cmdTest})
	register(command{name: testChildCommand, run: (*Main).cmdTestChild})
}

// testChildCommand is the hidden command `starflow test` runs each
// scenario's processes with.
const testChildCommand = "__test-child"

// Crash points around a call (spec/testing.md).
const (
	crashBefore = "before" // before anything about the call is journaled
	crashMid    = "mid"    // after its side effect, before its completion is journaled (an effectful call's call.started is on disk)
	crashAfter  = "after"  // after its completion is journaled, before the script sees it
)

// testHooks turn a process into a `starflow test` child: reproducible
// builtins, skipped waits, every execution of a builtin logged to the
// effects file, and a SIGKILL at the chosen point.
type testHooks struct {
	effects   string // file each builtin execution is appended to
	crashStep string
	crashAt   string
}

// testEpoch is the clock of every test child: runs see the same now().
var testEpoch = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func (h *testHooks) apply(opts *runtime.Options) {
	opts.SkipWaits = true
	opts.MaxInlineWait = 100 * 365 * 24 * time.Hour
	opts.Clock = func() time.Time { return testEpoch }
	for i, b := range opts.Builtins {
		opts.Builtins[i] = h.wrap(b)
	}
	opts.BeforeCall = func(id, step string) {
		if h.crashAt == crashBefore && step == h.crashStep {
			die()
		}
	}
	opts.AfterCall = func(id, step string) {
		if h.crashAt == crashAfter && step == h.crashStep {
			die()
		}
	}
}

func die() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// wrap logs every execution of a builtin and crashes at the chosen point.
func (h *testHooks) wrap(b *runtime.Builtin) *runtime.Builtin {
	w := *b
	fn := b.Fn
	w.Fn = func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
		v, err := fn(ctx, c)
		h.effect(c.Key, c.Builtin)
		if c.Step == h.crashStep && h.crashAt == crashMid {
			die()
		}
		return v, err
	}
	return &w
}

// effect records that a side effect happened under key, in this process.
func (h *testHooks) effect(key, name string) {
	f, err := os.OpenFile(h.effects, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s %s %d\n", key, name, os.Getpid())
	f.Sync()
	f.Close()
}

// RecordEffect lets a host builtin or global report a side effect to
// `starflow test` (it is a no-op outside a test child).
func (m *Main) RecordEffect(key, name string) {
	if m.test != nil {
		m.test.effect(key, name)
	}
}

// testInputs are the answers and signals a test feeds the workflow.
type testInputs struct {
	Answers []json.RawMessage            `json:"answers"`
	Signals map[string][]json.RawMessage `json:"signals"`
}

func readTestInputs(path string) (*testInputs, error) {
	in := &testInputs{}
	if path == "" {
		return in, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		err = json.Unmarshal(b, &in.Answers)
	} else {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(in)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: want a JSON array of answers, or {\"answers\": [...], \"signals\": {\"name\": [...]}}: %v", path, err)
	}
	return in, nil
}

// childOutcome is what a child prints.
type childOutcome struct {
	Status journal.Status    `json:"status"`
	Result json.RawMessage   `json:"result,omitempty"`
	Error  *journal.RunError `json:"error,omitempty"`
	Chaos  *chaos.Summary    `json:"chaos,omitempty"`
}

func (m *Main) cmdTestChild(ctx context.Context, args []string) int {
	var (
		c       execFlags
		script  string
		input   string
		answers string
		crash   string
		resume  bool
	)
	fs := c.register(m, testChildCommand, testChildCommand)
	h := &testHooks{}
	fs.StringVar(&script, "script", "", "")
	fs.StringVar(&input, "input", "null", "")
	fs.StringVar(&answers, "answers", "", "")
	fs.StringVar(&h.effects, "effects", "", "")
	fs.StringVar(&crash, "crash", "", "STEP:POINT")
	fs.BoolVar(&resume, "resume", false, "")
	id := "test"
	fs.StringVar(&id, "id", "test", "")
	if _, code, ok := m.parse(fs, args); !ok {
		return code
	}
	if crash != "" {
		h.crashStep, h.crashAt, _ = strings.Cut(crash, ":")
	}
	m.test = h
	in, err := readTestInputs(answers)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return ExitUsage
	}
	e, code := m.open(&c.common, "test", runtime.Options{})
	if e == nil {
		return code
	}
	defer e.Close()
	var out *runtime.Outcome
	if resume {
		// The test clock is virtual: it continues from the last moment the
		// journal recorded, as a real clock would have moved on.
		recs, rerr := e.store.Records(ctx, id, 1)
		if rerr != nil {
			return m.exitForError(rerr)
		}
		if n := len(recs); n > 0 {
			e.rt.Advance(recs[n-1].Time.Sub(e.rt.Now()))
		}
		out, err = e.rt.Resume(ctx, id)
	} else {
		raw, rerr := m.readInput(input)
		if rerr != nil {
			fmt.Fprintln(m.Stderr, "starflow test: --input:", rerr)
			return ExitUsage
		}
		out, err = e.rt.Start(ctx, runtime.StartRequest{ID: id, Script: script, Input: raw})
	}
	for i := 0; err == nil && out.Status == journal.StatusWaiting && i < 10000; i++ {
		if err = m.feed(ctx, e, id, in, out.Waiting); err == nil {
			out, err = e.rt.Resume(ctx, id)
		}
	}
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", errtext.Of(err))
		return ExitFailed
	}
	res := childOutcome{Status: out.Status, Result: out.Result, Error: out.Error}
	if e.chaos != nil {
		sum := e.chaos.Summary()
		res.Chaos = &sum
	}
	json.NewEncoder(m.Stdout).Encode(res)
	return ExitOK
}

// feed answers what a waiting test run waits for: the next answer or
// signal from the inputs, or, when there is none, time passes to the wait's
// deadline.
func (m *Main) feed(ctx context.Context, e *env, id string, in *testInputs, w *journal.Waiting) error {
	msgs, err := e.store.Inbox(ctx, id, 1)
	if err != nil {
		return err
	}
	switch w.Builtin {
	case "ask_human":
		given := 0
		for _, msg := range msgs {
			if msg.Kind == journal.MessageAnswer {
				given++
			}
		}
		if given < len(in.Answers) {
			_, err := e.rt.Send(ctx, id, journal.Message{Kind: journal.MessageAnswer, Value: in.Answers[given], From: "starflow test"})
			return err
		}
	case "wait_signal":
		var sw struct {
			Name string `json:"name"`
		}
		json.Unmarshal(w.Data, &sw)
		given := 0
		for _, msg := range msgs {
			if msg.Kind == journal.MessageSignal && msg.Name == sw.Name {
				given++
			}
		}
		if given < len(in.Signals[sw.Name]) {
			_, err := e.rt.Send(ctx, id, journal.Message{Kind: journal.MessageSignal, Name: sw.Name, Value: in.Signals[sw.Name][given], From: "starflow test"})
			return err
		}
	}
	if w.Until == nil {
		return fmt.Errorf("the run waits in %s (%s) and the answers file has nothing more for it", w.Builtin, w.Reason)
	}
	e.rt.Advance(w.Until.Sub(e.rt.Now()))
	return nil
}

// scenario is one crash point.
type scenario struct {
	name    string
	step    string
	builtin string
	point   string
	pass    bool
	detail  string
}

func (m *Main) cmdTest(ctx context.Context, args []string) int {
	var (
		c        execFlags
		input    string
		answers  string
		points   string
		compare  string
		keep     bool
		parallel int
	)
	fs := c.register(m, "test", "test SCRIPT [--input JSON|@file] [--answers FILE] [--points before,mid,after] [--compare result|status] [--keep]")
	fs.StringVar(&input, "input", "null", "the workflow's input: JSON, @file or @-")
	fs.StringVar(&answers, "answers", "", "JSON file of answers for ask_human, in order ([...]), or {\"answers\": [...], \"signals\": {\"name\": [...]}}")
	fs.StringVar(&points, "points", "before,mid,after", "crash points to test around each call")
	fs.StringVar(&compare, "compare", "result", "what a resumed run must reproduce: result (status and result), or status (for results that report live routing)")
	fs.BoolVar(&keep, "keep", false, "keep the scenarios' stores (printed) for inspection")
	fs.IntVar(&parallel, "parallel", 4, "scenarios run at once")
	pos, code, ok := m.parse(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(m.Stderr, "starflow test: want exactly one SCRIPT argument")
		fs.Usage()
		return ExitUsage
	}
	script := pos[0]
	if _, err := runtime.ReadScripts(script); err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return ExitUsage
	}
	// The script may say how it is tested: "# starflow test: FLAGS" lines
	// at its top give defaults (paths relative to the script); flags on the
	// command line win.
	header, err := testHeader(script)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return ExitUsage
	}
	if len(header) > 0 {
		if _, code, ok := m.parse(fs, header); !ok {
			fmt.Fprintf(m.Stderr, "starflow test: in the '# starflow test:' line of %s\n", script)
			return code
		}
		if answers != "" && !filepath.IsAbs(answers) {
			answers = filepath.Join(filepath.Dir(script), answers)
		}
		if _, code, ok := m.parse(fs, args); !ok {
			return code
		}
	}
	compareSet := false
	fs.Visit(func(f *flag.Flag) { compareSet = compareSet || f.Name == "compare" })
	if c.chaos != "" && !compareSet {
		// Faults land on the n-th request of a target; a process resumed
		// after a crash counts its requests anew, so its faults, and with
		// them retries and fallbacks, differ from the reference's.
		compare = "status"
	}
	if compare != "result" && compare != "status" {
		fmt.Fprintf(m.Stderr, "starflow test: --compare %q: want result or status\n", compare)
		return ExitUsage
	}
	raw, err := m.readInput(input)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow test: --input:", err)
		return ExitUsage
	}
	if _, err := readTestInputs(answers); err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return ExitUsage
	}
	var pts []string
	for _, p := range strings.Split(points, ",") {
		switch p = strings.TrimSpace(p); p {
		case crashBefore, crashMid, crashAfter:
			pts = append(pts, p)
		default:
			fmt.Fprintf(m.Stderr, "starflow test: --points: unknown point %q (want before, mid, after)\n", p)
			return ExitUsage
		}
	}
	work, err := os.MkdirTemp("", "starflow-test-")
	if err != nil {
		return m.exitForError(err)
	}
	if keep {
		fmt.Fprintln(m.Stderr, "starflow test: scenarios are kept in", work)
	} else {
		defer os.RemoveAll(work)
	}
	t := &tester{m: m, ctx: ctx, common: c, script: script, input: string(raw), answers: answers, work: work, statusOnly: compare == "status"}
	if c.chaos != "" {
		// One seed for every process, so the reference's faults can be
		// replayed exactly.
		t.chaosSeed = c.chaosSeed
		if !c.chaosSeedSet {
			p, err := chaos.Load(c.chaos)
			if err != nil {
				fmt.Fprintln(m.Stderr, "starflow test: --chaos:", err)
				return ExitUsage
			}
			t.chaosSeed = p.Seed
			if !p.HasSeed {
				t.chaosSeed = time.Now().UnixNano()
			}
		}
	}

	// The reference: a clean run.
	ref, refErr := t.child("reference", "", false)
	if refErr != nil {
		fmt.Fprintf(m.Stderr, "starflow test: the reference run did not finish: %v\n", refErr)
		return ExitFailed
	}
	calls, err := t.calls("reference")
	if err != nil {
		return m.exitForError(err)
	}
	refEffects, err := readEffects(filepath.Join(work, "reference", "effects"))
	if err != nil {
		return m.exitForError(err)
	}
	fmt.Fprintf(m.Stderr, "starflow test: %s: reference run %s with %d calls; %d crash scenarios\n", script, ref.Status, len(calls), len(calls)*len(pts))

	var results []scenario
	refRow := scenario{name: "reference", pass: true, detail: string(ref.Status)}
	if bad := repeated(refEffects, ""); bad != "" {
		refRow.pass, refRow.detail = false, bad
	}
	results = append(results, refRow)
	// Scenarios are independent (each has its own store); run a few at a
	// time, reporting in order.
	type job struct {
		call  testCall
		point string
	}
	var jobs []job
	for _, call := range calls {
		for _, p := range pts {
			jobs = append(jobs, job{call, p})
		}
	}
	out := make([]scenario, len(jobs))
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = t.scenario(j.call, j.point, ref)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ExitInterrupted
	}
	results = append(results, out...)
	code = m.printTest(results)
	if c.chaos != "" {
		m.printChaos(t, ref)
	}
	return code
}

// printChaos reports what the faults did to the reference run.
func (m *Main) printChaos(t *tester, ref *childOutcome) {
	fmt.Fprintf(m.Stdout, "\nchaos (seed %d; replay with --chaos-seed %d):\n", t.chaosSeed, t.chaosSeed)
	if ref.Chaos != nil {
		fmt.Fprintln(m.Stdout, indent(ref.Chaos.String()))
	}
	s, err := badgerstore.Open(filepath.Join(t.work, "reference", "db"), badgerstore.Options{})
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return
	}
	defer s.Close()
	recs, err := s.Records(t.ctx, runIDFor("reference"), 1)
	if err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return
	}
	var tally chaos.Tally
	if err := tally.AddRecords(recs); err != nil {
		fmt.Fprintln(m.Stderr, "starflow test:", err)
		return
	}
	fmt.Fprintln(m.Stdout, "how the reference run coped:")
	fmt.Fprint(m.Stdout, indent(tally.String()))
}

type tester struct {
	statusOnly bool
	chaosSeed  int64
	m          *Main
	ctx        context.Context
	common     execFlags
	script     string
	input      string
	answers    string
	work       string
}

type testCall struct{ step, builtin string }

// child runs one test process in scenario dir name; it returns the run's
// outcome, or an error if the process died (crashed) or failed.
func (t *tester) child(name, crash string, resume bool) (*childOutcome, error) {
	dir := filepath.Join(t.work, name)
	args := []string{testChildCommand, "--id", runIDFor(name), "--db", filepath.Join(dir, "db"), "--effects", filepath.Join(dir, "effects"),
		"--script", t.script, "--input", t.input, "--log-level", "error", "--log-format", "json"}
	if t.answers != "" {
		args = append(args, "--answers", t.answers)
	}
	if crash != "" {
		args = append(args, "--crash", crash)
	}
	if resume {
		args = append(args, "--resume")
	}
	if t.common.llmConfig != "" {
		args = append(args, "--llm-config", t.common.llmConfig)
	}
	for _, h := range t.common.allowHosts {
		args = append(args, "--http-allow-host", h)
	}
	for _, n := range t.common.secrets {
		args = append(args, "--secret", n)
	}
	if t.common.chaos != "" {
		args = append(args, "--chaos", t.common.chaos, "--chaos-seed", strconv.FormatInt(t.chaosSeed, 10))
	}
	cmd := exec.CommandContext(t.ctx, selfPath(), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
			return nil, errKilled
		}
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var out childOutcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("unreadable outcome %q: %v", stdout.String(), err)
	}
	return &out, nil
}

var errKilled = errors.New("killed")

// runIDFor names a scenario's run: each scenario has its own, so scenarios
// running at once never share idempotency keys at a live service.
func runIDFor(scenario string) string { return "test-" + scenario }

// selfPath is how this program was started, so that children run the same
// code (os.Args[0] also works when the program is a test binary standing
// in for starflow).
func selfPath() string {
	if strings.ContainsRune(os.Args[0], os.PathSeparator) {
		return os.Args[0]
	}
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		return p
	}
	p, _ := os.Executable()
	return p
}

// calls lists the journaled calls of a scenario's run, in order.
func (t *tester) calls(name string) ([]testCall, error) {
	s, err := badgerstore.Open(filepath.Join(t.work, name, "db"), badgerstore.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	recs, err := s.Records(t.ctx, runIDFor(name), 1)
	if err != nil {
		return nil, err
	}
	var out []testCall
	for _, r := range recs {
		if r.Type == journal.TypeCallStarted {
			cs, err := r.DecodeCallStarted()
			if err != nil {
				return nil, err
			}
			out = append(out, testCall{cs.Step, cs.Builtin})
		}
	}
	return out, nil
}

func (t *tester) scenario(call testCall, point string, ref *childOutcome) scenario {
	sc := scenario{name: fmt.Sprintf("#%s %s", call.step, call.builtin), step: call.step, builtin: call.builtin, point: point}
	dir := fmt.Sprintf("crash-%s-%s", strings.ReplaceAll(call.step, ".", "_"), point)
	out, err := t.child(dir, call.step+":"+point, false)
	switch {
	case err == nil:
		sc.detail = fmt.Sprintf("never reached the crash point: the run ended %s without calling %s at step %s (is the script deterministic?)", out.Status, call.builtin, call.step)
		return sc
	case !errors.Is(err, errKilled):
		sc.detail = "the crashing process failed: " + err.Error()
		return sc
	}
	out, err = t.child(dir, "", true)
	if err != nil {
		sc.detail = "resume failed: " + err.Error()
		return sc
	}
	if out.Status != ref.Status || (!t.statusOnly && !value.SameJSON(orNull(out.Result), orNull(ref.Result))) {
		sc.detail = fmt.Sprintf("resumed to %s %s, but the reference was %s %s", out.Status, describeOutcome(out), ref.Status, describeOutcome(ref))
		return sc
	}
	effects, err := readEffects(filepath.Join(t.work, dir, "effects"))
	if err != nil {
		sc.detail = err.Error()
		return sc
	}
	key := runIDFor(dir) + "/" + call.step
	if bad := repeated(effects, key); bad != "" {
		sc.detail = bad
		return sc
	}
	sc.pass = true
	if n := len(effects[key]); n > 1 {
		sc.detail = fmt.Sprintf("%s ran again after the crash, with the same key %s", call.builtin, key)
	}
	return sc
}

func orNull(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

func describeOutcome(o *childOutcome) string {
	if o.Error != nil {
		msg := o.Error.Message
		if o.Error.Kind != "divergence" && o.Error.Pos != "" {
			msg = o.Error.Pos + ": " + msg // divergences name their positions
		}
		return "(" + oneLine(msg) + ")"
	}
	s := string(o.Result)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// readEffects maps each idempotency key to the processes that executed it.
func readEffects(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		key, pid := fields[0], fields[2]
		seen := false
		for _, p := range out[key] {
			seen = seen || p == pid
		}
		if !seen {
			out[key] = append(out[key], pid)
		}
	}
	return out, sc.Err()
}

// repeated reports a side effect that ran in more than one process,
// except the call in flight at the crash (inFlight), which may run twice.
func repeated(effects map[string][]string, inFlight string) string {
	keys := make([]string, 0, len(effects))
	for k := range effects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := len(effects[k])
		if k == inFlight && n <= 2 {
			continue
		}
		if n > 1 {
			return fmt.Sprintf("side effect %s ran %d times: its call had completed, so a resume must not repeat it", k, n)
		}
	}
	return ""
}

func (m *Main) printTest(results []scenario) int {
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tCRASH\tRESULT\tDETAIL")
	failed := 0
	for _, r := range results {
		res := "pass"
		if !r.pass {
			res = "FAIL"
			failed++
		}
		point := r.point
		if point != "" {
			point = map[string]string{crashBefore: "before the call", crashMid: "after its effect, before the journal", crashAfter: "after the journal"}[point]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, point, res, r.detail)
	}
	tw.Flush()
	fmt.Fprintf(m.Stdout, "%d scenarios: %d passed, %d failed\n", len(results), len(results)-failed, failed)
	if failed > 0 {
		return ExitFailed
	}
	return ExitOK
}

// testHeader returns the flags of the script's "# starflow test:" lines.
func testHeader(script string) ([]string, error) {
	f, err := os.Open(script)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var args []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			break // the header ends at the first line of code
		}
		rest, ok := strings.CutPrefix(line, "# starflow test:")
		if !ok {
			continue
		}
		words, err := shellWords(rest)
		if err != nil {
			return nil, fmt.Errorf("%s: '# starflow test:' line: %v", script, err)
		}
		args = append(args, words...)
	}
	return args, sc.Err()
}

// shellWords splits a line into words, honouring single and double quotes.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
