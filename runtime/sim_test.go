package runtime_test

// A deterministic simulation of runs under faults, in the manner of
// FoundationDB's simulator and TigerBeetle's VOPR: one seed drives a whole
// history of starting runs, completing and failing their calls, sending
// signals and answers, cancelling, moving the clock, and crashing the
// process at any store write (copying the store's files as a crash leaves
// them, and recovering as `starflow serve` does). After every step the
// state is checked against a model: no run waits with a deliverable
// message or a due timer, every finished run has exactly one run.finished
// record and metadata that agrees with it, no acknowledged call runs again
// and no acknowledged message is lost.
//
// Every goroutine that touches the runtime is an actor, and only one runs
// at a time: the simulator releases it and waits until it parks (inside a
// call, or a wait) or ends. So a seed replays the same history. A failing
// seed prints the command that replays it:
//
//	go test ./runtime -run TestSimulation -sim.seed=N -v
//
// CI runs a fixed budget of seeds (-sim.seeds; smaller under -race).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/internal/crashfs"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
	sfrt "github.com/starflow/starflow/runtime"
)

var (
	simSeed  = flag.Uint64("sim.seed", 0, "run the simulation with this one seed")
	simSeeds = flag.Int("sim.seeds", 0, "how many seeds the simulation runs (default: 12, 3 under -race; env STARFLOW_SIM_SEEDS)")
	simSteps = flag.Int("sim.steps", 160, "actions per seed")
	simPower = flag.Int("sim.powerloss", 4, "run one seed in this many on a file system that drops unsynced writes, where every crash is a power loss (0: none)")
)

// simFSChildEnv makes the test binary serve crash-simulating file systems
// (internal/crashfs) for a simulation: a process must not serve a FUSE
// mount whose files it maps itself.
const simFSChildEnv = "STARFLOW_SIM_FS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(simFSChildEnv) != "" {
		os.Exit(simFSChild())
	}
	os.Exit(m.Run())
}

func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		simulate(t, *simSeed, *simSteps)
		return
	}
	if raceEnabled {
		// The race detector watches the same concurrency with fewer seeds.
		*simPower = 0
	}
	n := *simSeeds
	if n == 0 {
		n = 12
		if raceEnabled {
			n = 3
		}
		if v := os.Getenv("STARFLOW_SIM_SEEDS"); v != "" {
			fmt.Sscan(v, &n)
		}
	}
	base := uint64(time.Now().UnixNano())
	if testing.Short() {
		base = 1 // the same seeds every time
	}
	for i := 0; i < n; i++ {
		seed := base + uint64(i)*0x9e3779b97f4a7c15
		if !t.Run(fmt.Sprint(seed), func(t *testing.T) { simulate(t, seed, *simSteps) }) {
			return
		}
	}
}

// Scripts the simulation runs. effect() is a host builtin whose every
// execution the simulator sees and completes; its value depends only on
// its idempotency key, so a run's result is known in advance.
var simScripts = map[string]string{
	"chain": `
def main(input):
    a = effect("a")
    b = effect("b")
    c = effect("c")
    return [a, b, c]
`,
	"signal": `
def main(input):
    a = effect("a")
    s = wait_signal("go", timeout = "2h", default = "timeout")
    b = effect("b")
    return [a, s, b]
`,
	"ask": `
def main(input):
    q = ask_human("ok?", choices = ["yes", "no"])
    a = effect(q)
    return [q, a]
`,
	"sleepy": `
def main(input):
    a = effect("a")
    sleep("30s")
    sleep("3h")
    progress({"slept": True})
    b = attempt(effect, "b")
    return [a, b.ok]
`,
	"early": `
def main(input):
    s = wait_signal("go")
    t = wait_signal("go")
    return [s, t]
`,
}

type simEventKind int

const (
	evParked simEventKind = iota
	evDone
	evCrashed
)

type simEvent struct {
	kind  simEventKind
	actor *simActor
}

// simActor is a goroutine doing one thing to the runtime: starting or
// resuming a run, sending a message, cancelling.
type simActor struct {
	id      int
	name    string
	run     string
	release chan simRelease
	parked  *simPark // where it waits now, nil while running or done
	done    bool
	out     *sfrt.Outcome
	err     error
	ctx     context.Context
}

type simRelease struct {
	value starlark.Value
	err   error
	woke  bool // a Sleep ends: true (time passed, or woken), false (stopped)
}

// simPark is where an actor waits for the simulator.
type simPark struct {
	kind    string // "call", "sleep", or "suspending" (a builtin asked to wait; the run has not committed it yet)
	key     string // call: the idempotency key
	attempt int
	until   time.Time       // sleep
	wake    <-chan struct{} // sleep
	drain   <-chan struct{} // sleep
	ctx     context.Context
}

type simActorKey struct{}

// simWorld is one simulated history.
type simWorld struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	steps int
	log   []string

	mu  sync.Mutex // guards now
	now time.Time

	events  chan simEvent
	actors  []*simActor
	running int
	nextID  int

	gen     int // process generation
	dir     string
	fuse    *simFS // set when crashes are power losses
	store   *simStore
	rt      *sfrt.Runtime
	timers  map[string]time.Time // the simulated server's timers
	crashed bool

	model simModel
}

// simModel is what the history so far says must be true.
type simModel struct {
	runs     map[string]*simRun
	execs    map[string]int // key -> executions (first attempts) so far
	acked    map[string]int // key -> executions when its completion reached the script
	messages map[string]int // run -> messages whose delivery was acknowledged
}

// simSignal is a "go" signal a Send tried: one whose Send did not return
// (the process died) may have been delivered or not.
type simSignal struct {
	value string
	acked bool
}

type simRun struct {
	id         string
	script     string
	durability journal.Durability
	signals    []string    // values of "go" signals acknowledged, in order
	attempts   []simSignal // every "go" signal sent, acknowledged or not (the process died during it), in order
	answers    []string
	cancelled  bool // a Cancel returned success
}

func simulate(t *testing.T, seed uint64, steps int) {
	w := &simWorld{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0xdeadbeef)), steps: steps,
		now:    time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
		events: make(chan simEvent, 64),
		timers: map[string]time.Time{},
		model:  simModel{runs: map[string]*simRun{}, execs: map[string]int{}, acked: map[string]int{}, messages: map[string]int{}},
	}
	defer func() {
		if t.Failed() {
			t.Logf("history of seed %d (last actions):\n  %s", seed, strings.Join(lastN(w.log, 40), "\n  "))
			t.Logf("replay with: go test ./runtime -run TestSimulation -sim.seed=%d -sim.steps=%d -sim.powerloss=%d -v", seed, steps, *simPower)
		}
	}()
	root := simRoot(t)
	w.dir = filepath.Join(root, "gen0")
	if *simPower > 0 && w.rng.IntN(*simPower) == 0 {
		// Every crash of this history is a power loss: the store lives on
		// a file system that keeps only what was synced.
		w.fuse = startSimFS(t)
		backing := filepath.Join(root, "backing")
		if err := os.MkdirAll(filepath.Join(backing, "store"), 0o755); err != nil {
			t.Fatal(err)
		}
		mnt, err := w.fuse.do("MOUNT " + backing)
		if err != nil {
			t.Fatal(err)
		}
		w.dir = filepath.Join(mnt, "store")
		w.logf("the store is on a file system that drops unsynced writes: crashes are power losses")
	}
	w.open()
	defer func() {
		if w.store != nil && !w.store.frozen {
			w.store.dead.Store(true) // no fault point fires in Close
			w.store.Store.Close()
		}
	}()
	for step := 0; step < steps && !t.Failed(); step++ {
		w.act(step)
		w.settle()
		if w.crashed {
			w.recover(root)
		}
		w.check()
	}
	if os.Getenv("SIM_DUMP") != "" {
		t.Logf("history:\n  %s", strings.Join(w.log, "\n  "))
	}
	// Drain: let everything that can finish, finish; then check again.
	for i := 0; i < 200 && !t.Failed(); i++ {
		if !w.finishSome() {
			break
		}
		w.settle()
		if w.crashed {
			w.recover(root)
		}
		w.check()
	}
}

// simRoot is where a simulation keeps its stores: in memory (/dev/shm)
// when there is one, since a process crash does not depend on fsync and
// the simulation makes thousands of them.
func simRoot(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "starflow-sim-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (w *simWorld) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf("[gen %d] ", w.gen)+fmt.Sprintf(format, args...))
}

func (w *simWorld) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// open opens the store in w.dir and a runtime over it: a new process.
func (w *simWorld) open() {
	ss := &simStore{w: w}
	s, err := badgerstore.Open(w.dir, badgerstore.Options{SyncInterval: -1, FaultPoint: ss.faultPoint})
	if err != nil {
		w.t.Fatalf("open store (generation %d): %v", w.gen, err)
	}
	ss.Store = s
	w.store = ss
	effect := &sfrt.Builtin{Name: "effect", Fn: w.effect, Retry: &sfrt.RetryPolicy{MaxAttempts: 3, InitialInterval: 20 * time.Second, BackoffCoefficient: 100, Jitter: -1}}
	opts := sfrt.Options{
		Builtins:      append(w.pausingWaits(builtins.Standard()), effect),
		Globals:       builtins.Globals(),
		Clock:         w.Now,
		Sleep:         w.sleep,
		MaxInlineWait: time.Minute,
		MaxCrashes:    -1,
		Logger:        zerolog.Nop(),
	}
	w.rt, err = sfrt.New(w.store, opts)
	if err != nil {
		w.t.Fatal(err)
	}
}

// simStore counts writes and, once armed, makes the write it reaches the
// moment the process dies: that write and every later one never happen.
type simStore struct {
	*badgerstore.Store
	w        *simWorld
	writes   atomic.Int64
	crashAt  atomic.Int64 // 0: not armed
	dead     atomic.Bool
	inflight sync.WaitGroup

	// A crash inside a write, at a fault point of the store: the n-th time
	// the committer reaches faultAt, it stops there for good.
	faultMu sync.Mutex
	faultAt badgerstore.FaultPoint
	faultN  int
	frozen  bool // the committer is stopped inside a write
}

func (s *simStore) faultPoint(p badgerstore.FaultPoint) {
	s.faultMu.Lock()
	hit := s.faultAt == p && s.faultN > 0
	if hit {
		s.faultN--
		hit = s.faultN == 0
	}
	if hit && s.dead.CompareAndSwap(false, true) {
		s.frozen = true
		s.faultMu.Unlock()
		s.w.events <- simEvent{kind: evCrashed}
		select {} // the process is gone, inside this write
	}
	s.faultMu.Unlock()
}

func (s *simStore) gate() {
	n := s.writes.Add(1)
	if at := s.crashAt.Load(); s.dead.Load() || (at != 0 && n >= at) {
		if s.dead.CompareAndSwap(false, true) {
			s.w.events <- simEvent{kind: evCrashed}
		}
		select {} // the process is gone
	}
	s.inflight.Add(1)
}

func (s *simStore) Create(ctx context.Context, run *journal.Run, recs []journal.Record) error {
	s.gate()
	defer s.inflight.Done()
	return s.Store.Create(ctx, run, recs)
}

func (s *simStore) Append(ctx context.Context, id string, recs []journal.Record, run *journal.Run, durable bool) error {
	s.gate()
	defer s.inflight.Done()
	return s.Store.Append(ctx, id, recs, run, durable)
}

func (s *simStore) Deliver(ctx context.Context, id string, m journal.Message, run *journal.Run) (uint64, error) {
	s.gate()
	defer s.inflight.Done()
	return s.Store.Deliver(ctx, id, m, run)
}

func (s *simStore) PutBlob(ctx context.Context, data []byte) (string, error) {
	s.gate()
	defer s.inflight.Done()
	return s.Store.PutBlob(ctx, data)
}

// spawn starts an actor; the simulator then waits for it to park or end.
func (w *simWorld) spawn(name, run string, fn func(ctx context.Context, a *simActor)) *simActor {
	w.nextID++
	a := &simActor{id: w.nextID, name: name, run: run, release: make(chan simRelease)}
	a.ctx = context.WithValue(context.Background(), simActorKey{}, a)
	w.actors = append(w.actors, a)
	w.running++
	go func() {
		fn(a.ctx, a)
		w.events <- simEvent{kind: evDone, actor: a}
	}()
	return a
}

// park is called on an actor's goroutine: it waits for the simulator.
func (w *simWorld) park(ctx context.Context, p *simPark) simRelease {
	a, _ := ctx.Value(simActorKey{}).(*simActor)
	if a == nil {
		panic("simulation: a park outside an actor")
	}
	a.parked = p
	w.events <- simEvent{kind: evParked, actor: a}
	return <-a.release
}

// resume releases a parked actor.
func (w *simWorld) resume(a *simActor, r simRelease) {
	a.parked = nil
	w.running++
	a.release <- r
}

// settle waits until every actor has parked or ended, or the process died.
func (w *simWorld) settle() {
	for w.running > 0 && !w.crashed {
		var ev simEvent
		select {
		case ev = <-w.events:
		case <-time.After(2 * time.Minute):
			w.t.Fatalf("simulation stuck: %d actors running (a deadlock in the runtime?)", w.running)
		}
		switch ev.kind {
		case evParked:
			w.running--
		case evDone:
			w.running--
			ev.actor.done = true
			w.finished(ev.actor)
		case evCrashed:
			w.crashed = true
			w.store.faultMu.Lock()
			frozen := w.store.frozen
			w.store.faultMu.Unlock()
			if frozen {
				w.logf("the process dies inside a write, at %s", w.store.faultAt)
			} else {
				w.logf("the process dies at store write %d", w.store.writes.Load())
			}
			return
		}
	}
}

// effect is the simulated side effect: it parks until the simulator
// completes it.
func (w *simWorld) effect(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
	if c.Attempt == 1 {
		w.mu.Lock()
		w.model.execs[c.Key]++
		w.mu.Unlock()
	}
	r := w.park(ctx, &simPark{kind: "call", key: c.Key, attempt: c.Attempt, ctx: ctx})
	if r.err != nil {
		return nil, r.err
	}
	return r.value, nil
}

// pausingWaits makes the builtins that wait for messages park right after
// they ask to wait, before the runtime commits the wait: a message may
// come in that moment, and must not be lost.
func (w *simWorld) pausingWaits(bs []*sfrt.Builtin) []*sfrt.Builtin {
	out := make([]*sfrt.Builtin, len(bs))
	for i, b := range bs {
		out[i] = b
		if b.Accept == nil {
			continue
		}
		wb := *b
		fn := b.Fn
		wb.Fn = func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
			v, err := fn(ctx, c)
			var s *sfrt.Suspend
			if errors.As(err, &s) {
				w.park(ctx, &simPark{kind: "suspending", key: c.Key, ctx: ctx})
			}
			return v, err
		}
		out[i] = &wb
	}
	return out
}

// sleep is Options.Sleep: an in-process wait the simulator ends.
func (w *simWorld) sleep(ctx context.Context, d time.Duration, wake, drain <-chan struct{}) bool {
	r := w.park(ctx, &simPark{kind: "sleep", until: w.Now().Add(d), wake: wake, drain: drain, ctx: ctx})
	return r.woke
}

// finished records what an actor's Start or Resume came to.
func (w *simWorld) finished(a *simActor) {
	if a.out == nil {
		return
	}
	if a.out.Status == journal.StatusWaiting && a.out.Waiting != nil && a.out.Waiting.Until != nil {
		w.timers[a.run] = *a.out.Waiting.Until
	}
}

// parkedActors lists the actors waiting in the simulator, in a stable
// order.
func (w *simWorld) parkedActors(kind string) []*simActor {
	var out []*simActor
	for _, a := range w.actors {
		if !a.done && a.parked != nil && (kind == "" || a.parked.kind == kind) {
			out = append(out, a)
		}
	}
	return out
}

func (w *simWorld) executing(run string) *simActor {
	for _, a := range w.actors {
		if !a.done && a.run == run && a.parked != nil {
			return a
		}
	}
	return nil
}

func (w *simWorld) runIDs() []string {
	ids := make([]string, 0, len(w.model.runs))
	for id := range w.model.runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// act takes one random action.
func (w *simWorld) act(step int) {
	r := w.rng.IntN(100)
	switch {
	case r < 14 && len(w.model.runs) < 12:
		w.startRun()
	case r < 44:
		if calls := w.parkedActors("call"); len(calls) > 0 {
			w.completeCall(pick(w.rng, calls))
		} else {
			w.advance()
		}
	case r < 50:
		if susp := w.parkedActors("suspending"); len(susp) > 0 {
			a := pick(w.rng, susp)
			w.logf("go on: %s asked to wait", a.parked.key)
			w.resume(a, simRelease{})
			w.settle()
		}
	case r < 60:
		w.sendSignal()
	case r < 66:
		w.sendAnswer()
	case r < 70:
		w.cancel()
	case r < 85:
		w.advance()
	case r < 90:
		w.crashNow()
	case r < 94 && w.fuse == nil:
		p := pick(w.rng, []badgerstore.FaultPoint{badgerstore.FaultLogged, badgerstore.FaultLogged, badgerstore.FaultSynced})
		n := 1 + w.rng.IntN(6)
		w.store.faultMu.Lock()
		w.store.faultAt, w.store.faultN = p, n
		w.store.faultMu.Unlock()
		w.logf("arm: the process dies inside a write, the %d-th time the store is at %s", n, p)
	default:
		k := 1 + w.rng.IntN(8)
		w.store.crashAt.Store(w.store.writes.Load() + int64(k))
		w.logf("arm: the process dies at store write %d", w.store.writes.Load()+int64(k))
	}
}

func (w *simWorld) startRun() {
	names := make([]string, 0, len(simScripts))
	for n := range simScripts {
		names = append(names, n)
	}
	sort.Strings(names)
	script := pick(w.rng, names)
	id := fmt.Sprintf("%s-%d", script, len(w.model.runs))
	d := journal.DurabilitySync
	if w.rng.IntN(4) == 0 {
		d = journal.DurabilityAsync
	}
	w.model.runs[id] = &simRun{id: id, script: script, durability: d}
	w.logf("start %s (%s)", id, d)
	w.spawn("start "+id, id, func(ctx context.Context, a *simActor) {
		a.out, a.err = w.rt.Start(ctx, sfrt.StartRequest{ID: id, Script: "wf.star", Durability: d, Sources: map[string][]byte{"wf.star": []byte(simScripts[script])}})
	})
}

// completeCall ends a parked effect: a value (its key's), a transient
// failure (the runtime retries), or a permanent one.
func (w *simWorld) completeCall(a *simActor) {
	p := a.parked
	r := simRelease{value: starlark.String("v:" + p.key)}
	switch x := w.rng.IntN(20); {
	case x < 3:
		r = simRelease{err: &sfrt.Error{Kind: "unavailable", Message: "try later", Retryable: true}}
	case x < 4:
		r = simRelease{err: &sfrt.Error{Kind: "bad_request", Message: "no"}}
	}
	w.logf("complete %s attempt %d: %v", p.key, p.attempt, describeRelease(r))
	key := p.key
	w.resume(a, r)
	w.settle()
	var re *sfrt.Error
	if w.crashed || (errors.As(r.err, &re) && re.Retryable) {
		return
	}
	// The completion reached the script once the actor went on (parked
	// again or ended) without the process dying.
	w.ack(key)
}

// ack notes that a call's completion reached the script: the call must
// never run again.
func (w *simWorld) ack(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.model.acked[key] = w.model.execs[key]
}

func describeRelease(r simRelease) string {
	if r.err != nil {
		return "error " + r.err.Error()
	}
	return r.value.String()
}

func (w *simWorld) sendSignal() {
	ids := w.runIDs()
	if len(ids) == 0 {
		return
	}
	id := pick(w.rng, ids)
	name := "go"
	if w.rng.IntN(5) == 0 {
		name = "stop"
	}
	val := fmt.Sprintf("%q", fmt.Sprintf("sig%d", w.rng.IntN(1000)))
	w.send(id, journal.Message{Kind: journal.MessageSignal, Name: name, Value: json.RawMessage(val)})
}

func (w *simWorld) sendAnswer() {
	ids := w.runIDs()
	if len(ids) == 0 {
		return
	}
	id := pick(w.rng, ids)
	val := pick(w.rng, []string{`"yes"`, `"no"`, `"maybe"`})
	w.send(id, journal.Message{Kind: journal.MessageAnswer, Value: json.RawMessage(val)})
}

// send delivers a message the way the API does: Send, then resume the run
// if the delivery says so.
func (w *simWorld) send(id string, m journal.Message) {
	var d *sfrt.Delivery
	var err error
	w.spawn("send "+id, id, func(ctx context.Context, a *simActor) {
		d, err = w.rt.Send(ctx, id, m)
	})
	w.settle()
	goSignal := m.Kind == journal.MessageSignal && m.Name == "go"
	if w.crashed {
		w.logf("send %s %s %s: the process died during it", m.Kind, id, m.Value)
		if goSignal {
			w.model.runs[id].attempts = append(w.model.runs[id].attempts, simSignal{value: string(m.Value)})
		}
		return
	}
	if err != nil {
		w.logf("send %s %s %s: %v", m.Kind, id, m.Value, err)
		return
	}
	w.model.messages[id]++
	if goSignal {
		w.model.runs[id].signals = append(w.model.runs[id].signals, string(m.Value))
		w.model.runs[id].attempts = append(w.model.runs[id].attempts, simSignal{value: string(m.Value), acked: true})
	}
	w.logf("send %s %s %s: seq %d ends %v resume %v", m.Kind, id, m.Value, d.Message.Seq, d.Ends, d.Resume)
	// A run waiting in process was woken through its lifecycle.
	w.wakeSleepers()
	if d.Resume {
		w.resumeRun(id, "message")
	}
}

// wakeSleepers releases in-process waits whose run was woken, whose run was
// stopped, or whose time has come.
func (w *simWorld) wakeSleepers() {
	for _, a := range w.parkedActors("sleep") {
		p := a.parked
		switch {
		case len(p.wake) > 0:
			<-p.wake
			w.logf("wake %s (a message)", a.run)
			w.resume(a, simRelease{woke: true})
		case p.ctx.Err() != nil || isClosed(p.drain):
			w.logf("stop the wait of %s", a.run)
			w.resume(a, simRelease{woke: false})
		case !w.Now().Before(p.until):
			w.logf("wake %s (its wait is over)", a.run)
			w.resume(a, simRelease{woke: true})
		default:
			continue
		}
		w.settle()
		if w.crashed {
			return
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (w *simWorld) resumeRun(id, why string) {
	if w.executing(id) != nil {
		return // it acts on its own
	}
	w.logf("resume %s (%s)", id, why)
	w.spawn("resume "+id, id, func(ctx context.Context, a *simActor) {
		a.out, a.err = w.rt.Resume(ctx, id)
	})
	w.settle()
}

func (w *simWorld) cancel() {
	ids := w.runIDs()
	if len(ids) == 0 {
		return
	}
	id := pick(w.rng, ids)
	var err error
	var out *sfrt.Outcome
	exec := w.executing(id)
	w.logf("cancel %s (executing: %v)", id, exec != nil)
	c := w.spawn("cancel "+id, id, func(ctx context.Context, a *simActor) {
		out, err = w.rt.Cancel(ctx, id, "sim")
	})
	if exec != nil {
		// The cancel stops the execution's context; the parked call or wait
		// sees it and the execution ends.
		for exec.parked != nil && exec.parked.ctx.Err() == nil {
			time.Sleep(50 * time.Microsecond)
		}
		if exec.parked != nil {
			w.resume(exec, simRelease{err: exec.parked.ctx.Err()})
		}
	}
	w.settle()
	if w.crashed {
		return
	}
	if !c.done {
		w.t.Fatalf("cancel of %s did not return", id)
	}
	if err == nil {
		w.model.runs[id].cancelled = true
		w.logf("cancel %s: %s", id, out.Status)
	} else {
		w.logf("cancel %s: %v", id, err)
	}
}

// advance moves the clock; in-process waits that are over end, and the
// simulated server's timers fire.
func (w *simWorld) advance() {
	d := pick(w.rng, []time.Duration{time.Second, 30 * time.Second, 2 * time.Minute, time.Hour, 3 * time.Hour})
	w.mu.Lock()
	w.now = w.now.Add(d)
	w.mu.Unlock()
	w.logf("advance %s to %s", d, w.Now().Format(time.TimeOnly))
	w.wakeSleepers()
	w.fireTimers()
}

func (w *simWorld) fireTimers() {
	var due []string
	for id, at := range w.timers {
		if !at.After(w.Now()) {
			due = append(due, id)
		}
	}
	sort.Strings(due)
	for _, id := range due {
		if w.crashed {
			return
		}
		delete(w.timers, id)
		w.resumeRun(id, "timer")
	}
}

func (w *simWorld) crashNow() {
	w.logf("the process dies now")
	w.crashed = true
	w.store.dead.Store(true)
}

// finishSome makes progress at the end: completes a call, or moves the
// clock. It reports false when nothing is left to do.
func (w *simWorld) finishSome() bool {
	if susp := w.parkedActors("suspending"); len(susp) > 0 {
		w.resume(susp[0], simRelease{})
		w.settle()
		return true
	}
	if calls := w.parkedActors("call"); len(calls) > 0 {
		a := calls[0]
		w.logf("complete %s attempt %d (drain)", a.parked.key, a.parked.attempt)
		key := a.parked.key
		w.resume(a, simRelease{value: starlark.String("v:" + a.parked.key)})
		w.settle()
		if !w.crashed {
			w.ack(key)
		}
		return true
	}
	if len(w.parkedActors("sleep")) > 0 || len(w.timers) > 0 {
		w.mu.Lock()
		w.now = w.now.Add(4 * time.Hour)
		w.mu.Unlock()
		w.logf("advance 4h (drain)")
		w.wakeSleepers()
		w.fireTimers()
		return true
	}
	return false
}

// recover is a new process: the store as the crash left it, a new
// runtime, and what `starflow serve` does when it starts.
func (w *simWorld) recover(root string) {
	s := w.store
	s.dead.Store(true)
	s.faultMu.Lock()
	frozen := s.frozen
	s.faultMu.Unlock()
	if !frozen {
		s.inflight.Wait() // writes that got past the gate complete
	}
	w.gen++
	if w.fuse != nil {
		w.powerLoss()
		return
	}
	next := filepath.Join(root, fmt.Sprintf("gen%d", w.gen))
	// Badger's own background work (flushing a memtable it replayed,
	// compacting) may still be moving files: the image is taken once the
	// directory is quiet, as a crash a moment later would leave it.
	for try := 0; ; try++ {
		before := waitQuiet(w.dir)
		if err := copyDir(w.dir, next); err != nil {
			w.t.Fatal(err)
		}
		if dirListing(w.dir) == before || try == 20 {
			break
		}
		os.RemoveAll(next) // it moved during the copy: again
	}
	// The old process's goroutines stay parked forever. Its files were
	// copied as the crash left them; closing the old store now changes only
	// the old directory, which goes.
	if !frozen {
		s.Store.Close()
	} // else its committer is stopped inside a write: it stays as it is
	os.RemoveAll(w.dir)
	w.dir = next
	w.restart()
}

// powerLoss is recover on a file system that drops unsynced writes: the
// new process finds what was synced.
func (w *simWorld) powerLoss() {
	image, err := w.fuse.do("CUT")
	w.store.frozen = true // its file system is frozen: never close it
	if err != nil {
		w.t.Fatal(err)
	}
	short := filepath.Join(filepath.Dir(image), fmt.Sprintf("image%d", w.gen))
	if err := os.Rename(image, short); err != nil {
		w.t.Fatal(err)
	}
	image = short
	// The old process's store is left as it is: its file system is frozen
	// (writes fail, reads work), and Badger would retry flushing its
	// memtable there forever if it were closed.
	mnt, err := w.fuse.do("MOUNT " + image)
	if err != nil {
		w.t.Fatal(err)
	}
	w.dir = filepath.Join(mnt, "store")
	// A completion in async mode is not synced: a power loss may lose it,
	// and the call runs again.
	w.mu.Lock()
	for key := range w.model.acked {
		run, _, _ := strings.Cut(key, "/")
		if mr := w.model.runs[run]; mr != nil && mr.durability != journal.DurabilitySync {
			delete(w.model.acked, key)
		}
	}
	w.mu.Unlock()
	w.logf("power loss")
	w.restart()
}

// restart is a new process over w.dir: what `starflow serve` does when it
// starts.
func (w *simWorld) restart() {
	w.actors = nil
	w.running = 0
	w.crashed = false
	w.timers = map[string]time.Time{}
	w.open()
	w.logf("recover")
	ctx := context.Background()
	running, err := w.store.List(ctx, journal.Filter{Status: []journal.Status{journal.StatusRunning}})
	if err != nil {
		w.t.Fatalf("list after recovery: %v", err)
	}
	waiting, err := w.store.List(ctx, journal.Filter{Status: []journal.Status{journal.StatusWaiting}})
	if err != nil {
		w.t.Fatalf("list after recovery: %v", err)
	}
	for _, r := range running {
		if w.crashed {
			return
		}
		w.resumeRun(r.ID, "recovery")
	}
	for _, r := range waiting {
		if w.crashed {
			return
		}
		if ok, err := w.rt.Deliverable(ctx, r); err != nil {
			w.t.Fatalf("recovery: %v", err)
		} else if ok {
			w.resumeRun(r.ID, "recovery: a message ends its wait")
			continue
		}
		if r.Waiting != nil && r.Waiting.Until != nil {
			w.timers[r.ID] = *r.Waiting.Until
		}
	}
	w.fireTimers()
}

// simFS is a child process serving crash-simulating file systems.
type simFS struct {
	cmd *exec.Cmd
	in  io.Writer
	out *bufio.Scanner
}

func startSimFS(t *testing.T) *simFS {
	if err := crashfs.Available(); err != nil {
		if os.Getenv(crashfs.SkipEnv) == "1" {
			t.Skipf("%v (%s=1)", err, crashfs.SkipEnv)
		}
		t.Fatalf("%v\n(the simulation's power losses need /dev/fuse and root; set %s=1 to skip, or -sim.powerloss=0)", err, crashfs.SkipEnv)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), simFSChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &simFS{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		f.do("QUIT")
		cmd.Wait()
	})
	return f
}

// do sends a command and returns the answer's argument.
func (f *simFS) do(cmd string) (string, error) {
	if _, err := fmt.Fprintln(f.in, cmd); err != nil {
		return "", err
	}
	if !f.out.Scan() {
		return "", fmt.Errorf("file system process: no answer to %s", cmd)
	}
	status, arg, _ := strings.Cut(f.out.Text(), " ")
	if status != "OK" {
		return "", fmt.Errorf("file system process: %s: %s", cmd, arg)
	}
	return arg, nil
}

// simFSChild serves the commands MOUNT backing (answers the mountpoint),
// CUT (a power loss of the latest mount: answers the directory with its
// durable image) and QUIT.
func simFSChild() int {
	var mounts []*crashfs.FS
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "MOUNT":
			f, mnt, err := crashfs.Mount(arg)
			if err != nil {
				fmt.Println("ERR", err)
				continue
			}
			mounts = append(mounts, f)
			fmt.Println("OK", mnt)
		case "CUT":
			if len(mounts) == 0 {
				fmt.Println("ERR nothing mounted")
				continue
			}
			dir, err := mounts[len(mounts)-1].PowerLoss(nil)
			if err != nil {
				fmt.Println("ERR", err)
				continue
			}
			fmt.Println("OK", dir)
		case "QUIT":
			// The latest mount is closed properly (its store was closed);
			// the others were cut, and stay as they are until this
			// process exits: the simulation left stores open on them.
			if n := len(mounts); n > 0 {
				mounts[n-1].Close()
			}
			fmt.Println("OK")
			os.Exit(0)
		}
	}
	return 0
}

// waitQuiet waits until a directory's files (names and sizes) stop
// changing.
func waitQuiet(dir string) string {
	prev, same := dirListing(dir), 0
	for i := 0; i < 400 && same < 3; i++ {
		time.Sleep(5 * time.Millisecond)
		cur := dirListing(dir)
		if cur == prev {
			same++
		} else {
			prev, same = cur, 0
		}
	}
	return prev
}

func dirListing(dir string) string {
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		if info, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s:%d ", e.Name(), info.Size())
		}
	}
	return b.String()
}

// copyDir copies a store directory as a crash leaves it (the files'
// contents as the OS has them), skipping the holes of sparse files (Badger
// preallocates its logs that way).
func copyDir(from, to string) error {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || e.Name() == "LOCK" {
			continue
		}
		if err := copySparse(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

func copySparse(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := dst.Truncate(st.Size()); err != nil {
		return err
	}
	const seekData, seekHole = 3, 4
	for off := int64(0); off < st.Size(); {
		data, err := src.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole is left
		}
		if err != nil { // no SEEK_DATA here: copy it all
			_, err = io.Copy(io.NewOffsetWriter(dst, off), io.NewSectionReader(src, off, st.Size()-off))
			return err
		}
		hole, err := src.Seek(data, seekHole)
		if err != nil {
			hole = st.Size()
		}
		if _, err := io.Copy(io.NewOffsetWriter(dst, data), io.NewSectionReader(src, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// check compares the state with the model.
func (w *simWorld) check() {
	if w.crashed {
		return
	}
	t := w.t
	ctx := context.Background()
	for _, id := range w.runIDs() {
		mr := w.model.runs[id]
		meta, err := w.store.Run(ctx, id)
		if errors.Is(err, journal.ErrNotFound) {
			continue // the process died before the run was created
		}
		if err != nil {
			t.Fatalf("run %s: %v", id, err)
		}
		recs, err := w.store.Records(ctx, id, 1)
		if err != nil {
			t.Fatalf("run %s: records: %v", id, err)
		}
		finished := 0
		var fin journal.RunFinished
		for i, r := range recs {
			if r.Type == journal.TypeRunFinished {
				finished++
				r.Decode(&fin)
				if i != len(recs)-1 {
					t.Fatalf("run %s: records after run.finished", id)
				}
			}
		}
		switch {
		case finished > 1:
			t.Fatalf("run %s has %d run.finished records", id, finished)
		case finished == 1 && meta.Status != fin.Status:
			t.Fatalf("run %s: metadata says %s, its journal ends %s", id, meta.Status, fin.Status)
		case finished == 0 && meta.Status.Final():
			t.Fatalf("run %s: metadata says %s, its journal has no run.finished", id, meta.Status)
		}
		if meta.Status == journal.StatusCompleted {
			w.checkResult(mr, meta)
		}
		if mr.cancelled && !meta.Status.Final() {
			t.Fatalf("run %s: Cancel succeeded but it is %s", id, meta.Status)
		}
		msgs, err := w.store.Inbox(ctx, id, 1)
		if err != nil {
			t.Fatalf("run %s: inbox: %v", id, err)
		}
		if len(msgs) < w.model.messages[id] {
			t.Fatalf("run %s: %d messages acknowledged, %d in its inbox", id, w.model.messages[id], len(msgs))
		}
		if len(msgs) > 0 && meta.Inbox != msgs[len(msgs)-1].Seq {
			t.Fatalf("run %s: metadata says inbox %d, the inbox ends at %d", id, meta.Inbox, msgs[len(msgs)-1].Seq)
		}
		if meta.Status == journal.StatusWaiting && w.executing(id) == nil {
			if ok, err := w.rt.Deliverable(ctx, meta); err != nil || ok {
				t.Fatalf("run %s waits (%s) with a message in its inbox that ends the wait (%v)", id, meta.Waiting.Reason, err)
			}
			// The stronger form, from the journal: no message that no call
			// consumed ends the wait.
			consumed := map[uint64]bool{}
			for _, r := range recs {
				if r.Type == journal.TypeCallCompleted {
					cc, _ := r.DecodeCallCompleted()
					for _, seq := range cc.Consumed {
						consumed[seq] = true
					}
				}
			}
			if b := simBuiltin(meta.Waiting.Builtin); b != nil && b.Accept != nil && !meta.Waiting.Retry {
				for i := range msgs {
					if consumed[msgs[i].Seq] {
						continue
					}
					if ends, err := b.Accept(meta.Waiting, &msgs[i]); err == nil && ends {
						t.Fatalf("run %s waits (%s) while message %d in its inbox, which no call consumed, ends the wait", id, meta.Waiting.Reason, msgs[i].Seq)
					}
				}
			}
			if u := meta.Waiting.Until; u != nil {
				if _, armed := w.timers[id]; !armed {
					t.Fatalf("run %s waits until %s and no timer is armed", id, u)
				}
			}
		}
	}
	// No call ran again once its completion reached the script: it is
	// journaled (in sync mode durably, in async mode as far as a process
	// crash goes).
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, at := range w.model.acked {
		if n := w.model.execs[key]; n > at {
			t.Fatalf("call %s ran again (%d executions, %d when its completion reached the script)", key, n, at)
		}
	}
}

// attempt is the index of a signal value among those sent, or -1.
func (r *simRun) attempt(v string) int {
	for i, a := range r.attempts {
		if a.value == v {
			return i
		}
	}
	return -1
}

// simBuiltin is the standard builtin of that name.
func simBuiltin(name string) *sfrt.Builtin {
	for _, b := range builtins.Standard() {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// checkResult compares a completed run's result with what its script must
// return given the messages it got.
func (w *simWorld) checkResult(mr *simRun, meta *journal.Run) {
	var got []any
	if err := json.Unmarshal(meta.Result, &got); err != nil {
		w.t.Fatalf("run %s: result %s: %v", mr.id, meta.Result, err)
	}
	v := func(step int) string { return fmt.Sprintf("v:%s/%d", mr.id, step) }
	switch mr.script {
	case "chain":
		want := []any{v(1), v(2), v(3)}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			w.t.Fatalf("run %s: result %v, want %v", mr.id, got, want)
		}
	case "signal":
		if len(got) != 3 || got[0] != v(1) || got[2] != v(3) {
			w.t.Fatalf("run %s: result %v", mr.id, got)
		}
		if got[1] != "timeout" && mr.attempt(fmt.Sprintf("%q", got[1])) < 0 {
			w.t.Fatalf("run %s: signal value %v was never sent (sent %v)", mr.id, got[1], mr.attempts)
		}
	case "early":
		// The first two signals delivered, in order: every acknowledged
		// one sent before the second is one of them.
		if len(got) != 2 {
			w.t.Fatalf("run %s: result %v", mr.id, got)
		}
		i, j := mr.attempt(fmt.Sprintf("%q", got[0])), mr.attempt(fmt.Sprintf("%q", got[1]))
		if i < 0 || j <= i {
			w.t.Fatalf("run %s: result %v, signals sent %v", mr.id, got, mr.attempts)
		}
		for k, a := range mr.attempts[:j] {
			if a.acked && k != i {
				w.t.Fatalf("run %s: result %v skips the acknowledged signal %s (sent %v)", mr.id, got, a.value, mr.attempts)
			}
		}
	}
}
