package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"
	starlarkjson "go.starlark.net/lib/json"
	starlarkmath "go.starlark.net/lib/math"
	starlarktime "go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
)

// Options configure a Runtime. The zero value works: no builtins beyond
// the language's own, sync durability, default limits.
type Options struct {
	// Builtins are the journaled builtins scripts may call (package
	// builtins provides the standard set).
	Builtins []*Builtin

	// Globals are extra predeclared values that are deterministic and need
	// no journal: constants, pure helper functions, modules. They must not
	// perform I/O or read clocks or randomness.
	Globals starlark.StringDict

	// Logger receives one event per builtin call and the scripts' log()
	// and print() output. Default: discard.
	Logger zerolog.Logger

	// MaxSteps bounds the Starlark computation steps of one execution of a
	// run (default 100,000,000). MaxCalls bounds its builtin calls (default
	// 100,000). A run started with its own limits keeps them.
	MaxSteps uint64
	MaxCalls int

	// MaxMemory bounds the bytes of Starlark values one run holds (default
	// 256 MiB; negative: no bound). MaxCompute bounds the time a run
	// computes between two builtin calls (default 1 minute; negative: no
	// bound). A run that exceeds either fails with a LimitError.
	MaxMemory  int64
	MaxCompute time.Duration

	// MaxInlineWait is the longest wait (a sleep, a retry backoff) a run
	// spends in-process; longer waits suspend the run (status waiting),
	// holding no goroutine. Default 1 minute; negative suspends always.
	MaxInlineWait time.Duration

	// Durability is the default for runs started without one (default sync).
	Durability journal.Durability

	// Clock returns the current time (default time.Now). Tests use it to
	// control now() and sleep().
	Clock func() time.Time

	// Sleep is how the runtime waits in process (a short sleep, a backoff
	// between attempts): it waits d on Clock's time and reports true, or
	// returns early — true when wake receives (a message came), false when
	// ctx ends or drain closes. The default uses a real timer; tests and
	// simulations that drive Clock themselves replace it, so that every
	// wait of every run is one they see.
	Sleep func(ctx context.Context, d time.Duration, wake, drain <-chan struct{}) bool

	// Secrets resolves secret("NAME") references when a builtin uses them
	// (default: environment variables).
	Secrets func(name string) (string, error)

	// CheckSecret, if set, is asked before Secrets whenever a builtin
	// resolves a secret (Call.Secret): it returns nil if runs may use the
	// secret name, or an error saying it is not declared and how to
	// declare it (never a value). Nil lets runs use every name Secrets
	// resolves. Hosts that run untrusted or third-party scripts set it to
	// an allowlist so that secret("ANY_VARIABLE") cannot read the
	// process's whole environment.
	CheckSecret func(name string) error

	// SkipWaits makes every wait (sleep, timeout, backoff) end at once by
	// moving the runtime's clock forward instead: for testing workflows
	// (starflow test), never for production.
	SkipWaits bool

	// OnCall, if set, is told of every call's progress: completed,
	// failed, replayed, retried, waiting in process (metrics use it). It
	// runs on the run's goroutine and must be quick.
	OnCall func(CallEvent)

	// BeforeCall, if set, is called when a call is about to run for the
	// first time, before anything about it is journaled; AfterCall after
	// its completion is journaled (as durably as the run's mode asks),
	// before the script sees the result. starflow test uses them to crash
	// at exactly those points.
	BeforeCall func(runID, step string)
	AfterCall  func(runID, step string)

	// MaxCrashes quarantines a run after the process died this many times
	// in a row while executing it without a new call completing (a script
	// that exhausts memory and takes the process down, say): the run gets
	// status quarantined and is left alone until Retry, so that other runs
	// go on. Default 5; negative never quarantines.
	MaxCrashes int
}

// Runtime executes and replays runs against a journal.Store. It is safe for
// concurrent use; each run executes on the goroutine that calls Start or
// Resume.
type Runtime struct {
	store       journal.Store
	opts        Options
	builtins    map[string]*Builtin
	predeclared starlark.StringDict
	log         zerolog.Logger

	mu       sync.Mutex
	runs     map[string]*lifecycle // runs someone in this process works with
	instance string                // this runtime's identity in Run.Executing

	progMu sync.Mutex
	progs  map[string]*compiled // compile cache by blob hash + dialect

	drainOnce sync.Once
	drain     chan struct{} // closed by Drain

	skewMu sync.Mutex
	skew   time.Duration // how far SkipWaits has moved the clock
}

// Default limits.
const (
	DefaultMaxSteps      = 100_000_000
	DefaultMaxCalls      = 100_000
	DefaultMaxInlineWait = time.Minute
	DefaultMaxCrashes    = 5
	DefaultMaxMemory     = 256 << 20
	DefaultMaxCompute    = time.Minute
)

// New returns a Runtime over store.
func New(store journal.Store, opts Options) (*Runtime, error) {
	if opts.MaxSteps == 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	if opts.MaxCalls == 0 {
		opts.MaxCalls = DefaultMaxCalls
	}
	if opts.MaxMemory == 0 {
		opts.MaxMemory = DefaultMaxMemory
	}
	if opts.MaxCompute == 0 {
		opts.MaxCompute = DefaultMaxCompute
	}
	if opts.MaxInlineWait == 0 {
		opts.MaxInlineWait = DefaultMaxInlineWait
	}
	if opts.Durability == "" {
		opts.Durability = journal.DurabilitySync
	}
	if opts.MaxCrashes == 0 {
		opts.MaxCrashes = DefaultMaxCrashes
	}
	if _, err := journal.ParseDurability(string(opts.Durability)); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = timerSleep
	}
	if opts.Secrets == nil {
		opts.Secrets = EnvSecrets
	}
	rt := &Runtime{
		store:    store,
		opts:     opts,
		builtins: make(map[string]*Builtin),
		log:      opts.Logger,
		runs:     make(map[string]*lifecycle),
		instance: NewID(),
		progs:    make(map[string]*compiled),
		drain:    make(chan struct{}),
	}
	if err := rt.buildPredeclared(); err != nil {
		return nil, err
	}
	return rt, nil
}

// Store returns the runtime's store.
func (rt *Runtime) Store() journal.Store { return rt.store }

func (rt *Runtime) now() time.Time {
	if !rt.opts.SkipWaits {
		return rt.opts.Clock()
	}
	rt.skewMu.Lock()
	defer rt.skewMu.Unlock()
	return rt.opts.Clock().Add(rt.skew)
}

// Advance moves the runtime's clock forward by d when SkipWaits is set (a
// test harness passing a deadline); otherwise it does nothing.
func (rt *Runtime) Advance(d time.Duration) {
	if rt.opts.SkipWaits && d > 0 {
		rt.skip(d)
	}
}

// Now returns the runtime's clock.
func (rt *Runtime) Now() time.Time { return rt.now() }

func (rt *Runtime) skip(d time.Duration) {
	rt.skewMu.Lock()
	rt.skew += d
	rt.skewMu.Unlock()
}

// Builtins returns the journaled builtins, sorted by name.
func (rt *Runtime) Builtins() []*Builtin {
	out := make([]*Builtin, 0, len(rt.builtins))
	for _, b := range rt.builtins {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// standardGlobals are the deterministic modules every script sees.
func standardGlobals() starlark.StringDict {
	tm := &starlarkstruct.Module{Name: "time", Members: starlark.StringDict{}}
	for k, v := range starlarktime.Module.Members {
		if k != "now" { // the clock is the journaled now() builtin
			tm.Members[k] = v
		}
	}
	return starlark.StringDict{
		"json":   starlarkjson.Module,
		"math":   starlarkmath.Module,
		"time":   tm,
		"struct": starlark.NewBuiltin("struct", starlarkstruct.Make),
	}
}

func (rt *Runtime) buildPredeclared() error {
	pre := standardGlobals()
	for k, v := range rt.opts.Globals {
		pre[k] = v
	}
	modules := map[string]*starlarkstruct.Module{}
	for _, b := range rt.opts.Builtins {
		if b == nil || b.Name == "" || b.Fn == nil {
			return fmt.Errorf("runtime: a builtin needs a Name and an Fn")
		}
		if _, dup := rt.builtins[b.Name]; dup {
			return fmt.Errorf("runtime: builtin %s registered twice", b.Name)
		}
		if b.Retry != nil {
			if err := b.Retry.Validate(); err != nil {
				return fmt.Errorf("runtime: builtin %s: %w", b.Name, err)
			}
		}
		rt.builtins[b.Name] = b
		fn := rt.wrap(b)
		mod, member, dotted := strings.Cut(b.Name, ".")
		if !dotted {
			if _, clash := rt.opts.Globals[b.Name]; clash {
				return fmt.Errorf("runtime: builtin %s clashes with a global of the same name", b.Name)
			}
			pre[b.Name] = fn
			continue
		}
		if strings.Contains(member, ".") {
			return fmt.Errorf("runtime: builtin name %s has more than one dot", b.Name)
		}
		m := modules[mod]
		if m == nil {
			if existing, ok := pre[mod]; ok {
				em, isMod := existing.(*starlarkstruct.Module)
				if !isMod {
					return fmt.Errorf("runtime: builtin %s: %s is already a global that is not a module", b.Name, mod)
				}
				m = &starlarkstruct.Module{Name: mod, Members: starlark.StringDict{}}
				for k, v := range em.Members {
					m.Members[k] = v
				}
			} else {
				m = &starlarkstruct.Module{Name: mod, Members: starlark.StringDict{}}
			}
			modules[mod] = m
			pre[mod] = m
		}
		m.Members[member] = fn
	}
	pre.Freeze()
	rt.predeclared = pre
	return nil
}

// wrap makes the Starlark function that routes a script's call through the
// journaled call boundary.
func (rt *Runtime) wrap(b *Builtin) *starlark.Builtin {
	return starlark.NewBuiltin(b.Name, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		r, _ := thread.Local(runKey).(*run)
		if r == nil {
			return nil, fmt.Errorf("%s can only be called inside a starflow run", b.Name)
		}
		return r.call(thread, b, args, kwargs)
	})
}

// StartRequest describes a new run.
type StartRequest struct {
	// ID names the run; empty generates a time-sortable ID. Starting an ID
	// that exists never repeats completed work: it returns the recorded
	// outcome, or continues the run if it is unfinished.
	ID string

	// Script is the entry file's path. Its load() statements are resolved
	// relative to it, from Sources if set, else from disk.
	Script string

	// Sources, if set, holds the script files by path (Script and every
	// file it loads) instead of reading them from disk.
	Sources map[string][]byte

	// Input is the JSON passed to main(input); empty means null.
	Input json.RawMessage

	Durability journal.Durability // "" means the runtime default
	Limits     journal.Limits     // zero fields mean the runtime defaults
	Dialect    journal.Dialect    // Starlark options: while loops, recursion
}

// Outcome is where a run stands after Start or Resume returns.
type Outcome struct {
	ID      string
	Status  journal.Status
	Result  json.RawMessage   // when completed
	Error   *journal.RunError // when failed, diverged or cancelled
	Waiting *journal.Waiting  // when waiting
	Run     *journal.Run      // the run's metadata after this execution
	Existed bool              // Start found the run already there
	Notes   []string          // warnings for the caller (e.g. script changed since start)
	Stats   ExecStats
}

// ExecStats counts what one execution did.
type ExecStats struct {
	Replayed int // calls answered from the journal
	Executed int // calls executed live
}

// Errors returned by Start and Resume.
var (
	// ErrInvalid wraps every problem with the request itself: missing or
	// unparsable script, bad input JSON, unknown run.
	ErrInvalid = errors.New("invalid request")
	// ErrInterrupted is returned when the context was cancelled before the
	// run finished or suspended; the run is left resumable.
	ErrInterrupted = errors.New("run interrupted")
	// ErrBusy is returned when the run is already executing in this runtime.
	ErrBusy = errors.New("run is already executing")
)

// InvalidError is a bad request, with the script position when the
// problem is in the script.
type InvalidError struct {
	Pos  string // file:line:col, if the problem is in a script
	Msg  string
	Code string // "" (the request is malformed), CodeNotFound, CodeConflict or CodeRejected
}

// InvalidError codes, for callers that map errors to protocol statuses.
const (
	CodeNotFound = "not_found" // no such run
	CodeConflict = "conflict"  // the run's state does not allow it (finished, not waiting)
	CodeRejected = "rejected"  // a message the waiting builtin refused
)

func (e *InvalidError) Error() string {
	if e.Pos != "" {
		return e.Pos + ": " + e.Msg
	}
	return e.Msg
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func errNoRun(id string) error {
	return &InvalidError{Msg: fmt.Sprintf("no run with id %s in this store", id), Code: CodeNotFound}
}

func invalidf(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// ReadScripts reads a script from disk with every file it loads,
// transitively, by the names runs record. Clients that submit runs to a
// server send these sources.
func ReadScripts(entry string) (map[string][]byte, error) {
	return readScripts(StartRequest{Script: ScriptName(entry)})
}

// NewID returns a new time-sortable run ID (a ULID).
func NewID() string { return ulid.Make().String() }

// Start starts a run, or picks up an existing run with the same ID, and
// executes it on the calling goroutine until it finishes, waits or is
// interrupted.
func (rt *Runtime) Start(ctx context.Context, req StartRequest) (*Outcome, error) {
	out, err := rt.Create(ctx, req)
	if err != nil {
		return nil, err
	}
	if out.Existed {
		res, err := rt.Resume(ctx, out.ID)
		if res != nil {
			res.Existed = true
			res.Notes = append(out.Notes, res.Notes...)
		}
		return res, err
	}
	return rt.execute(ctx, out.ID, false)
}

// Create validates a request, pins its script and records the run (status
// running) without executing it; Resume executes it. If a run with the ID
// exists, Create changes nothing and returns it with Existed set (and notes
// if the script or input differ from the recorded ones). Servers use Create
// to answer a request at once and execute the run on a worker.
func (rt *Runtime) Create(ctx context.Context, req StartRequest) (*Outcome, error) {
	if req.Script != "" {
		req.Script = ScriptName(req.Script)
	}
	if req.ID == "" {
		req.ID = NewID()
	} else if err := journal.ValidateID(req.ID); err != nil {
		return nil, &InvalidError{Msg: err.Error()}
	}
	durability := req.Durability
	if durability == "" {
		durability = rt.opts.Durability
	}
	if _, err := journal.ParseDurability(string(durability)); err != nil {
		return nil, &InvalidError{Msg: err.Error()}
	}
	input := req.Input
	if len(strings.TrimSpace(string(input))) == 0 {
		input = json.RawMessage("null")
	}
	canonInput, err := compactJSON(input)
	if err != nil {
		return nil, &InvalidError{Msg: "input is not valid JSON: " + err.Error()}
	}

	// A run that exists is never started twice.
	if existing, err := rt.store.Run(ctx, req.ID); err == nil {
		return rt.existing(ctx, existing, req, canonInput)
	} else if !errors.Is(err, journal.ErrNotFound) {
		return nil, err
	}

	files, err := readScripts(req)
	if err != nil {
		return nil, err
	}
	if _, err := rt.compileAll(req.Script, files, req.Dialect); err != nil {
		return nil, err
	}
	manifest := journal.Manifest{Entry: req.Script, Files: map[string]string{}}
	for name, src := range files {
		h, err := rt.store.PutBlob(ctx, src)
		if err != nil {
			return nil, err
		}
		manifest.Files[name] = h
	}
	limits := req.Limits
	if limits.MaxSteps == 0 {
		limits.MaxSteps = rt.opts.MaxSteps
	}
	if limits.MaxCalls == 0 {
		limits.MaxCalls = rt.opts.MaxCalls
	}
	now := rt.now().UTC()
	started := journal.RunStarted{Script: manifest, Input: canonInput, Durability: durability, Limits: limits, Dialect: req.Dialect}
	rec, err := journal.NewRecord(1, journal.TypeRunStarted, now, started)
	if err != nil {
		return nil, err
	}
	meta := &journal.Run{
		ID:         req.ID,
		Status:     journal.StatusRunning,
		Script:     req.Script,
		ScriptHash: manifestHash(manifest),
		Durability: durability,
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	if err := rt.store.Create(ctx, meta, []journal.Record{rec}); err != nil {
		if errors.Is(err, journal.ErrRunExists) {
			// Lost a race with another Create of the same ID.
			existing, gerr := rt.store.Run(ctx, req.ID)
			if gerr != nil {
				return nil, gerr
			}
			return rt.existing(ctx, existing, req, canonInput)
		}
		return nil, err
	}
	return &Outcome{ID: req.ID, Status: journal.StatusRunning, Run: meta}, nil
}

func (rt *Runtime) existing(ctx context.Context, existing *journal.Run, req StartRequest, input json.RawMessage) (*Outcome, error) {
	out := outcomeOf(existing)
	out.Existed = true
	recs, err := rt.store.Records(ctx, existing.ID, 1)
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		var st journal.RunStarted
		if err := recs[0].Decode(&st); err == nil {
			if files, ferr := readScripts(req); ferr == nil {
				m := journal.Manifest{Entry: req.Script, Files: map[string]string{}}
				for name, src := range files {
					m.Files[name] = blobHash(src)
				}
				if manifestHash(m) != existing.ScriptHash {
					out.Notes = append(out.Notes, fmt.Sprintf("run %s already exists and was started with different code than %s has now; it keeps the code it started with", existing.ID, req.Script))
				}
			}
			if string(st.Input) != string(input) {
				out.Notes = append(out.Notes, fmt.Sprintf("run %s already exists with a different input; the input it started with is kept", existing.ID))
			}
		}
	}
	return out, nil
}

// Resume continues a run: it replays the journal and goes on live from where
// the run stopped. On a finished or quarantined run it returns the
// recorded outcome and executes nothing.
func (rt *Runtime) Resume(ctx context.Context, id string) (*Outcome, error) {
	return rt.execute(ctx, id, true)
}

func outcomeOf(meta *journal.Run) *Outcome {
	return &Outcome{ID: meta.ID, Status: meta.Status, Result: meta.Result, Error: meta.Error, Waiting: meta.Waiting, Run: meta}
}

// Cancel stops a run. A run executing in this runtime stops at its next
// builtin boundary (an in-flight call's context is cancelled); a waiting,
// interrupted or quarantined run is cancelled at once. by names who asked
// (recorded in the journal).
func (rt *Runtime) Cancel(ctx context.Context, id, by string) (*Outcome, error) {
	l := rt.lifecycle(id)
	defer l.release()
	meta, err := l.cancel(ctx, by)
	if meta == nil {
		return nil, err
	}
	return outcomeOf(meta), err
}

// Retry releases a quarantined run (see Options.MaxCrashes): its status
// becomes running again, with its crash count cleared, and the caller
// resumes it. by names who asked (recorded in the journal).
func (rt *Runtime) Retry(ctx context.Context, id, by string) (*Outcome, error) {
	l := rt.lifecycle(id)
	defer l.release()
	meta, err := l.retry(ctx, by)
	if meta == nil {
		return nil, err
	}
	return outcomeOf(meta), err
}

// Wake makes a run that is waiting in-process (a short sleep, a backoff)
// re-check its wait now. It reports whether such a run was found.
func (rt *Runtime) Wake(id string) bool {
	l := rt.executing(id)
	if l == nil {
		return false
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return true
}

// executing returns run id's lifecycle if the run executes in this
// runtime now.
func (rt *Runtime) executing(id string) *lifecycle {
	rt.mu.Lock()
	l := rt.runs[id]
	rt.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exec == nil {
		return nil
	}
	return l
}

// Drain makes every executing run stop at its next builtin boundary (an
// in-flight call finishes and is journaled first) and in-process waits end
// early; the runs are left resumable, their Start or Resume returning
// ErrInterrupted. New executions are refused the same way. Drain is for
// graceful shutdown; it cannot be undone.
func (rt *Runtime) Drain() { rt.drainOnce.Do(func() { close(rt.drain) }) }

func (rt *Runtime) draining() bool {
	select {
	case <-rt.drain:
		return true
	default:
		return false
	}
}

// Progress returns the value a run last published with progress(): live for
// a run executing in this runtime, else as stored.
func (rt *Runtime) Progress(ctx context.Context, id string) (json.RawMessage, error) {
	l := rt.lifecycle(id)
	defer l.release()
	_, meta, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return meta.Progress, nil
}

// Waiting returns what a run waits on now, whether it waits in this
// process (a short wait) or is suspended; nil if it is not waiting.
func (rt *Runtime) Waiting(ctx context.Context, id string) (*journal.Waiting, error) {
	l := rt.lifecycle(id)
	defer l.release()
	w, _, err := l.current(ctx)
	return w, err
}

// Send delivers a message to a run's inbox: an answer to the question the
// run waits on, or a named signal (kept in order until the script waits for
// it). An answer the waiting builtin refuses (not one of the choices, not
// valid for the schema) is not stored: the error says why and the run
// keeps waiting. The Delivery says whether the message ends the run's
// current wait and whether the caller should resume the run: a run
// executing in this runtime acts on the message by itself, even one that
// is just about to suspend.
func (rt *Runtime) Send(ctx context.Context, id string, m journal.Message) (*Delivery, error) {
	switch m.Kind {
	case journal.MessageAnswer:
	case journal.MessageSignal:
		if !signalName.MatchString(m.Name) {
			return nil, invalidf("invalid signal name %q: use 1-128 characters from A-Z a-z 0-9 . _ -", m.Name)
		}
	default:
		return nil, invalidf("unknown message kind %q (want answer or signal)", m.Kind)
	}
	if len(m.Value) == 0 {
		m.Value = json.RawMessage("null")
	}
	v, err := compactJSON(m.Value)
	if err != nil {
		return nil, invalidf("the value is not valid JSON: %v", err)
	}
	if len(v) > journal.MaxRecordBytes {
		return nil, invalidf("the value is %d bytes, more than the journal's limit of %d bytes", len(v), journal.MaxRecordBytes)
	}
	m.Value = v
	l := rt.lifecycle(id)
	defer l.release()
	return l.send(ctx, m)
}

// Deliverable reports whether a waiting run has a message in its inbox,
// delivered after its wait was committed, that ends the wait: a process
// that died between delivering a message and resuming the run leaves it
// so, and whoever recovers runs must resume it.
func (rt *Runtime) Deliverable(ctx context.Context, meta *journal.Run) (bool, error) {
	w := meta.Waiting
	if meta.Status != journal.StatusWaiting || w == nil || w.Retry {
		return false, nil
	}
	b := rt.builtins[w.Builtin]
	if b == nil || b.Accept == nil {
		return false, nil
	}
	msgs, err := rt.store.Inbox(ctx, meta.ID, w.Inbox+1)
	if err != nil {
		return false, err
	}
	for i := range msgs {
		if ends, err := b.Accept(w, &msgs[i]); err == nil && ends {
			return true, nil
		}
	}
	return false, nil
}

var signalName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// Active returns the IDs of runs executing in this runtime now.
func (rt *Runtime) Active() []string {
	rt.mu.Lock()
	ls := make([]*lifecycle, 0, len(rt.runs))
	for _, l := range rt.runs {
		ls = append(ls, l)
	}
	rt.mu.Unlock()
	var ids []string
	for _, l := range ls {
		l.mu.Lock()
		if l.exec != nil {
			ids = append(ids, l.id)
		}
		l.mu.Unlock()
	}
	sort.Strings(ids)
	return ids
}

// Executing reports whether run id is executing in this runtime now.
func (rt *Runtime) Executing(id string) bool { return rt.executing(id) != nil }

// timerSleep is the default Options.Sleep: a real timer.
func timerSleep(ctx context.Context, d time.Duration, wake, drain <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-ctx.Done():
		return false
	case <-drain:
		return false
	}
}

func compactJSON(b json.RawMessage) (json.RawMessage, error) {
	v, err := value.FromJSON(b)
	if err != nil {
		return nil, err
	}
	return value.ToJSON(v)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
