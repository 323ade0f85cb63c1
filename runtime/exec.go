package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
)

const (
	runKey    = "starflow.run"
	branchKey = "starflow.branch"
)

// run is one execution of a run: created when an execution starts,
// discarded when it ends. It is owned by the goroutine executing the
// script; what other goroutines may ask of it (cancel, wake) goes through
// its lifecycle.
type run struct {
	rt  *Runtime
	id  string
	lc  *lifecycle // nil for a replay check
	cur *cursor

	parent  context.Context // the caller's context: its end is an interrupt
	ctx     context.Context // parent, also cancelled by Cancel
	stopCtx context.CancelFunc

	prog    *compiled
	thread  *starlark.Thread
	modules map[string]*moduleEntry
	log     zerolog.Logger

	calls   int
	lastPos string // position of the last replayed call
	main    *branch
	fatal   error
	stats   ExecStats

	dry    bool           // a replay check: answer calls from the journal only, write nothing
	values map[string]any // run-scoped settings (SetRunValue)
	guard  *guard         // steps, memory and compute limits
}

type moduleEntry struct {
	globals starlark.StringDict
	err     error
}

// branch numbers the calls of one thread of execution. The main thread's
// steps are "1", "2", ...; a branch created at step S as branch B numbers
// its calls "S.B.1", "S.B.2", ..., independent of how branches interleave.
type branch struct {
	prefix string
	n      int
}

func (b *branch) next() string {
	b.n++
	if b.prefix == "" {
		return strconv.Itoa(b.n)
	}
	return b.prefix + "." + strconv.Itoa(b.n)
}

// fatal conditions: they end the execution and cannot be caught by attempt().

// suspended: the run's wait is committed (the execution has ended).
type suspended struct {
	waiting *journal.Waiting
	meta    *journal.Run
}

func (s *suspended) Error() string { return "run suspended: " + s.waiting.Reason }

// reachedLive ends a replay check at the first call the journal does not
// answer.
type reachedLive struct {
	step, builtin, pos string
}

func (e *reachedLive) Error() string { return "replay check reached step " + e.step }

type interrupted struct{}

func (interrupted) Error() string { return "run interrupted" }

type cancelled struct{ by string }

func (c *cancelled) Error() string { return "run cancelled by " + c.by }

// LimitError reports a run that exceeded one of its limits.
type LimitError struct {
	Limit string // "steps", "calls", "memory" or "compute"
	Max   uint64 // the limit: a count, bytes, or nanoseconds
	Used  int64  // memory: the bytes measured
	Pos   string
}

func (e *LimitError) Error() string {
	switch e.Limit {
	case "steps":
		return fmt.Sprintf("run exceeded its limit of %d execution steps (does it loop forever? raise the limit with --max-steps or Options.MaxSteps)", e.Max)
	case "memory":
		used, limit := formatBytes(e.Used), formatBytes(int64(e.Max))
		if used == limit {
			used, limit = fmt.Sprintf("%d bytes", e.Used), fmt.Sprintf("%d bytes", e.Max)
		}
		return fmt.Sprintf("run exceeded its memory limit: its values hold %s, more than %s (does it accumulate data it does not need? raise the limit with --max-memory or Options.MaxMemory)", used, limit)
	case "compute":
		return fmt.Sprintf("run computed for more than %s without calling a builtin (does it loop forever, or work on very large values? raise the limit with --max-compute or Options.MaxCompute)", time.Duration(e.Max))
	default:
		return fmt.Sprintf("run exceeded its limit of %d builtin calls (raise it with --max-calls or Options.MaxCalls)", e.Max)
	}
}

// DivergenceError reports a script that no longer matches its journal: the
// recorded call and the new one, each with its position.
type DivergenceError struct {
	RunID       string
	Step        string
	Recorded    string // the journaled call, e.g. `http.get("https://a")`
	RecordedPos string
	Got         string // the script's call now; empty if the script made none
	GotPos      string
	Reason      string // "different builtin", "different arguments", "call removed"
}

func (e *DivergenceError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("run %s diverged from its journal at step %s: the journal recorded %s at %s, but the script finished without making that call (%s)",
			e.RunID, e.Step, e.Recorded, e.RecordedPos, e.Reason)
	}
	return fmt.Sprintf("run %s diverged from its journal at step %s: the journal recorded %s at %s, but the script now calls %s at %s (%s)",
		e.RunID, e.Step, e.Recorded, e.RecordedPos, e.Got, e.GotPos, e.Reason)
}

// storeFailure wraps an error from the store during execution.
type storeFailure struct{ err error }

func (s *storeFailure) Error() string { return "journal write failed: " + s.err.Error() }
func (s *storeFailure) Unwrap() error { return s.err }

func (r *run) setFatal(err error) error {
	if r.fatal == nil {
		r.fatal = err
	}
	return r.fatal
}

// requestCancel stops the execution: its context ends, so an in-flight
// call is interrupted, and the interpreter stops at its next step. The
// lifecycle calls it, under its lock.
func (r *run) requestCancel(by string) {
	if r.stopCtx != nil {
		r.stopCtx()
	}
	if r.thread != nil {
		r.thread.Cancel("cancelled by " + by)
	}
}

// cancelRequested returns who asked to cancel the run, if anyone did.
func (r *run) cancelRequested() string {
	if r.lc == nil {
		return ""
	}
	r.lc.mu.Lock()
	defer r.lc.mu.Unlock()
	return r.lc.cancelBy
}

// publish makes the execution's context and thread reachable by Cancel.
func (r *run) publish(stop context.CancelFunc, thread *starlark.Thread) (cancelledBy string) {
	if r.lc == nil {
		r.stopCtx, r.thread = stop, thread
		return ""
	}
	r.lc.mu.Lock()
	defer r.lc.mu.Unlock()
	if stop != nil {
		r.stopCtx = stop
	}
	if thread != nil {
		r.thread = thread
	}
	return r.lc.cancelBy
}

// execute replays and continues a run. resumed says whether this is a
// continuation (as opposed to the first execution after Start).
func (rt *Runtime) execute(ctx context.Context, id string, resumed bool) (*Outcome, error) {
	if rt.draining() {
		return nil, ErrInterrupted
	}
	l := rt.lifecycle(id)
	defer l.release()
	r := &run{rt: rt, id: id, lc: l}
	meta, claimed, err := l.begin(ctx, r)
	if err != nil {
		return nil, err
	}
	if !claimed {
		return outcomeOf(meta), nil
	}
	recs, err := rt.store.Records(ctx, id, 1)
	if err != nil {
		l.abandon()
		return nil, err
	}
	if n := len(recs); n > 1 && recs[n-1].Type == journal.TypeRunFinished {
		meta, err := l.repairFinished(recs[n-1])
		if err != nil {
			return nil, err
		}
		return outcomeOf(meta), nil
	}
	if r.cur, err = newCursor(id, recs, l, rt.now); err != nil {
		l.abandon()
		return nil, err
	}
	if r.prog, err = rt.program(ctx, r.cur.started.Script, r.cur.started.Dialect); err != nil {
		l.abandon()
		return nil, err
	}
	// A run created but never executed (a server's Create, then a
	// worker's Resume) starts now rather than resumes.
	resumed = resumed && len(recs) > 1
	quarantined, err := l.started(r.cur, resumed)
	if err != nil {
		l.abandon()
		return nil, err
	}
	if quarantined {
		out := outcomeOf(l.snapshot())
		r.rt.log.Error().Str("run", id).Str("reason", out.Error.Message).Msg("run quarantined")
		return out, nil
	}

	r.parent = ctx
	runCtx, stopCtx := context.WithCancel(ctx)
	defer stopCtx()
	r.ctx = runCtx
	if by := r.publish(stopCtx, nil); by != "" {
		stopCtx() // cancelled before it got this far
	}
	r.log = rt.log.With().Str("run", id).Logger()
	if resumed {
		r.log.Info().Str("script", r.cur.started.Script.Entry).Int("journaled_calls", r.cur.recordedCompleted).Msg("run resumed")
	} else {
		r.log.Info().Str("script", r.cur.started.Script.Entry).Msg("run started")
	}
	result, err := r.runMain()
	return r.finish(result, err)
}

func (r *run) runMain() (starlark.Value, error) {
	thread := &starlark.Thread{
		Name: r.id,
		Load: r.loadModule,
		Print: func(th *starlark.Thread, msg string) {
			r.emitLog(th, zerolog.InfoLevel, msg, nil)
		},
	}
	thread.SetLocal(runKey, r)
	r.main = &branch{}
	thread.SetLocal(branchKey, r.main)
	r.guard = newGuard(r, thread)
	defer r.guard.stop()
	if by := r.publish(nil, thread); by != "" {
		thread.Cancel("cancelled by " + by)
	}
	stop := context.AfterFunc(r.ctx, func() { thread.Cancel("interrupted") })
	defer stop()

	r.modules = map[string]*moduleEntry{}
	globals, err := r.initModule(thread, r.prog.entry)
	if err != nil {
		return nil, err
	}
	main, ok := globals["main"].(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("%s: main is not a function", r.prog.entry)
	}
	input, err := value.FromJSON(r.cur.started.Input)
	if err != nil {
		return nil, fmt.Errorf("decode input: %w", err)
	}
	return starlark.Call(thread, main, starlark.Tuple{input}, nil)
}

func (r *run) initModule(thread *starlark.Thread, name string) (starlark.StringDict, error) {
	if e, ok := r.modules[name]; ok {
		if e == nil {
			return nil, fmt.Errorf("cycle in load graph involving %s", name)
		}
		return e.globals, e.err
	}
	prog := r.prog.progs[name]
	if prog == nil {
		return nil, fmt.Errorf("%s is not part of the script pinned for this run", name)
	}
	r.modules[name] = nil
	g, err := prog.Init(thread, r.rt.predeclared)
	g.Freeze()
	r.modules[name] = &moduleEntry{globals: g, err: err}
	return g, err
}

func (r *run) loadModule(thread *starlark.Thread, module string) (starlark.StringDict, error) {
	from := thread.CallFrame(0).Pos.Filename()
	name, err := resolveLoad(dirOf(r.prog.entry), from, module)
	if err != nil {
		return nil, err
	}
	return r.initModule(thread, name)
}

func dirOf(name string) string {
	if i := strings.LastIndex(name, "/"); i >= 0 {
		return name[:i]
	}
	return "."
}

// callerPos returns the position of the innermost Starlark frame at or
// below depth (skipping builtins such as attempt()).
func callerPos(thread *starlark.Thread, depth int) string {
	for d := depth; d < thread.CallStackDepth(); d++ {
		p := thread.CallFrame(d).Pos
		if p.Filename() != "<builtin>" && p.IsValid() {
			return p.String()
		}
	}
	return ""
}

// replaying reports whether the execution is still behind the journal.
func (r *run) replaying() bool { return r.cur.replaying() }

// canonicalArgs returns the journal form of a call's arguments and their
// digest.
func canonicalArgs(b *Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (json.RawMessage, string, error) {
	if b.Redact != nil {
		args, kwargs = b.Redact(args, kwargs)
	}
	kw := starlark.NewDict(len(kwargs))
	for _, p := range kwargs {
		kw.SetKey(p[0], p[1])
	}
	all := make(starlark.Tuple, 0, len(args)+1)
	all = append(all, args...)
	if len(kwargs) > 0 {
		all = append(all, kw)
	}
	enc, err := value.EncodeCanonical(starlark.NewList(all))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %s", b.Name, strings.Replace(err.Error(), "value[", "argument[", 1))
	}
	h := sha256.New()
	h.Write([]byte(b.Name))
	h.Write([]byte{0})
	h.Write(enc)
	return enc, hex.EncodeToString(h.Sum(nil)), nil
}

// describeCall renders a call for messages: name(args) with arguments in
// journal form, shortened.
func describeCall(name string, args json.RawMessage) string {
	s := string(args)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return name + "(" + s + ")"
}

// call is the journaled call boundary: every builtin call of every script
// goes through it.
func (r *run) call(thread *starlark.Thread, b *Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if r.fatal != nil {
		return nil, r.fatal
	}
	if r.guard.tripped() {
		return nil, r.setFatal(r.guard.exceeded(callerPos(thread, 1)))
	}
	if by := r.cancelRequested(); by != "" {
		return nil, r.setFatal(&cancelled{by})
	}
	if r.rt.draining() {
		// Shutting down: stop at this boundary, resumable.
		return nil, r.setFatal(interrupted{})
	}
	pos := callerPos(thread, 1)
	r.calls++
	maxCalls := r.cur.started.Limits.MaxCalls
	if maxCalls == 0 {
		maxCalls = r.rt.opts.MaxCalls
	}
	if r.calls > maxCalls {
		return nil, r.setFatal(&LimitError{Limit: "calls", Max: uint64(maxCalls), Pos: pos})
	}
	br, _ := thread.Local(branchKey).(*branch)
	if br == nil {
		return nil, fmt.Errorf("%s: called from a thread starflow did not start", b.Name)
	}
	step := br.next()
	jargs, digest, err := canonicalArgs(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	if len(jargs) > journal.MaxRecordBytes {
		// Refused before anything happens, so a replay refuses it again
		// at the same place.
		return nil, &CallError{Builtin: b.Name, Kind: "too_large", Message: fmt.Sprintf("%s: its arguments are %d bytes in journal form, more than the journal's limit of %d bytes", b.Name, len(jargs), journal.MaxRecordBytes)}
	}
	rec, err := r.cur.match(step, b.Name, digest, pos, func() string { return describeCall(b.Name, jargs) })
	if err != nil {
		return nil, r.setFatal(err)
	}
	if rec != nil && rec.completed != nil {
		r.stats.Replayed++
		r.lastPos = pos
		r.callEvent(CallEvent{Step: step, Builtin: b.Name, Outcome: "replayed"})
		return r.resultOf(b.Name, rec.completed)
	}
	if r.dry {
		return nil, r.setFatal(&reachedLive{step: step, builtin: b.Name, pos: pos})
	}
	if rec == nil {
		if h := r.rt.opts.BeforeCall; h != nil {
			h(r.id, step)
		}
		cs := journal.CallStarted{Step: step, Builtin: b.Name, Args: jargs, Digest: digest, Key: r.id + "/" + step, Pos: pos}
		if err := r.cur.start(cs, !b.Effect); err != nil {
			return nil, r.setFatal(err)
		}
		rec = &recordedCall{}
	}
	// Otherwise the call was started (perhaps waiting) but never
	// completed: the process stopped during it. It runs again, with the
	// same key. Computation stops meanwhile: a live call is not the
	// script's computing, whatever it waits for.
	r.guard.pause()
	defer r.guard.resume()
	return r.live(b, step, pos, args, kwargs, rec)
}

func (r *run) resultOf(name string, cc *journal.CallCompleted) (starlark.Value, error) {
	if cc.Error != nil {
		return nil, &CallError{Builtin: name, Kind: cc.Error.Kind, Message: cc.Error.Message}
	}
	v, err := value.Decode(cc.Result)
	if err != nil {
		return nil, r.setFatal(&journal.CorruptError{RunID: r.id, Reason: fmt.Sprintf("result of step %s cannot be decoded: %v", cc.Step, err)})
	}
	return v, nil
}

// live executes a call, with retries and waits, and journals its outcome.
func (r *run) live(b *Builtin, step, pos string, args starlark.Tuple, kwargs []starlark.Tuple, rec *recordedCall) (starlark.Value, error) {
	start := r.rt.now()
	c := &Call{
		RunID: r.id, Step: step, Key: r.id + "/" + step, Builtin: b.Name, Pos: pos,
		Args: args, Kwargs: kwargs, Wait: rec.waiting, Started: start,
		Log: r.log.With().Str("step", step).Logger(),
		rt:  r.rt,
		run: r,
	}
	var attempts []journal.Attempt
	n := 1
	if w := rec.waiting; w != nil && w.Retry != nil {
		// The run stopped while the call waited between attempts: go on
		// from the attempt that was due, after what is left of the wait.
		n, attempts, c.state, c.Started = w.Retry.Attempt, w.Retry.Attempts, w.Retry.State, w.Retry.Started
		c.Wait = nil // a wait between attempts is the runtime's, not the builtin's
		if !r.waitRetry(c, b, pos, w) {
			return nil, r.fatal
		}
	}
	var v starlark.Value
	var failure *Error
	for ; ; n++ {
		c.Attempt = n
		t0 := r.rt.now()
		seen := r.lc.inbox() // before the builtin looks at the inbox
		var err error
		v, err = b.Fn(r.ctx, c)
		var s *Suspend
		for errors.As(err, &s) {
			again := r.suspend(c, b, s, pos, seen)
			if !again {
				return nil, r.fatal
			}
			seen = r.lc.inbox()
			v, err = b.Fn(r.ctx, c)
		}
		if err == nil {
			if v == nil {
				v = starlark.None
			}
			if len(attempts) > 0 {
				attempts = append(attempts, journal.Attempt{N: n, Start: t0.UTC(), Duration: r.rt.now().Sub(t0)})
			}
			break
		}
		if r.ctx.Err() != nil {
			// Stopped from outside: this is not the call's outcome.
			return nil, r.stopped()
		}
		var wait time.Duration
		var state json.RawMessage
		retry := false
		var rt *Retry
		if errors.As(err, &rt) {
			failure = rt.Err
			if failure == nil {
				failure = &Error{Kind: "error", Message: b.Name + ": attempt failed", Retryable: true}
			}
			retry, wait = true, max(rt.After, 0)
			if rt.State != nil {
				if state, err = json.Marshal(rt.State); err != nil {
					return nil, r.setFatal(fmt.Errorf("%s: the state for its next attempt cannot be journaled: %w", b.Name, err))
				}
			}
		} else {
			failure = classify(err)
			if b.Retry != nil && b.Retry.ShouldRetry(failure, n) {
				retry, wait = true, b.Retry.wait(failure, n)
			}
		}
		att := journal.Attempt{N: n, Start: t0.UTC(), Duration: r.rt.now().Sub(t0), Error: failure.Message, Kind: failure.Kind}
		if retry {
			att.Wait = wait
			attempts = append(attempts, att)
			r.callEvent(CallEvent{Step: step, Builtin: b.Name, Outcome: "retry", Attempts: n, Kind: failure.Kind, Wait: wait})
			until := r.rt.now().Add(wait).UTC()
			w := &journal.CallWaiting{
				Step:   step,
				Reason: fmt.Sprintf("retry %s: attempt %d failed (%s), attempt %d at %s", b.Name, n, failure.Kind, n+1, until.Format(time.RFC3339)),
				Until:  &until,
				Retry:  &journal.RetryWait{Attempt: n + 1, State: state, Attempts: attempts, Started: c.Started.UTC()},
			}
			if !r.waitRetry(c, b, pos, w) {
				return nil, r.fatal
			}
			c.state = state
			failure = nil
			continue
		}
		if len(attempts) > 0 {
			attempts = append(attempts, att)
		}
		break
	}

	cc := journal.CallCompleted{Step: step, Attempts: attempts, Detail: c.detail, Duration: r.rt.now().Sub(start), Consumed: c.consumed}
	if failure == nil {
		enc, err := value.Encode(v)
		switch {
		case err != nil:
			failure = &Error{Kind: "result", Message: fmt.Sprintf("%s returned a value that cannot be journaled: %v", b.Name, err)}
		case len(enc) > journal.MaxRecordBytes:
			failure = &Error{Kind: "result_too_large", Message: fmt.Sprintf("%s returned %d bytes in journal form, more than the journal's limit of %d bytes", b.Name, len(enc), journal.MaxRecordBytes)}
		default:
			cc.Result = enc
		}
	}
	if failure != nil {
		cc.Result = nil
		cc.Error = &journal.CallError{Kind: failure.Kind, Message: failure.Message}
	}
	if err := r.cur.complete(cc, r.lc.progressed()); err != nil {
		return nil, r.setFatal(err)
	}
	if h := r.rt.opts.AfterCall; h != nil {
		h(r.id, step)
	}
	for _, seq := range c.consumed {
		r.cur.consumed[seq] = true
	}
	r.stats.Executed++
	ev := CallEvent{Step: step, Builtin: b.Name, Outcome: "ok", Duration: cc.Duration, Attempts: c.Attempt}
	if failure != nil {
		ev.Outcome, ev.Kind = "error", failure.Kind
	}
	r.callEvent(ev)
	// Scripts see the journal's value, decoded, exactly as a replay would.
	return r.resultOf(b.Name, &cc)
}

// waitRetry waits until w.Until before the next attempt of a call: in
// process when the wait is short enough, else by journaling w and
// suspending the run. It reports false when the execution must stop
// (r.fatal says why).
func (r *run) waitRetry(c *Call, b *Builtin, pos string, w *journal.CallWaiting) bool {
	d := w.Until.Sub(r.rt.now())
	if d <= 0 {
		return true
	}
	waiting := &journal.Waiting{Step: c.Step, Builtin: b.Name, Reason: w.Reason, Until: w.Until, Pos: pos, Retry: true}
	if max := r.rt.opts.MaxInlineWait; max >= 0 && d <= max {
		return r.waitHere(waiting, d, 0, false)
	}
	if rec := r.cur.index[c.Step]; rec == nil || rec.waiting == nil || !sameWait(rec.waiting, w) {
		if err := r.cur.wait(*w); err != nil {
			r.setFatal(err)
			return false
		}
	}
	return r.commitWait(waiting, 0, false)
}

// waitHere waits d in process, with waiting as what the run waits for. It
// reports false when the run was stopped meanwhile (r.fatal says why), and
// true when the wait is over, or, with accepts, at once when a message
// arrived since the builtin looked at its inbox (at seen).
func (r *run) waitHere(waiting *journal.Waiting, d time.Duration, seen uint64, accepts bool) bool {
	if r.lc.enterWait(waiting, seen, accepts) {
		return true // a message came: look again
	}
	ok := r.pause(d)
	r.lc.leaveWait()
	if !ok {
		r.stopped()
	}
	return ok
}

// commitWait suspends the run on waiting. It reports true when the
// builtin must look at its inbox again instead (a message arrived since it
// looked, at seen); otherwise the execution stops (r.fatal says why).
func (r *run) commitWait(waiting *journal.Waiting, seen uint64, accepts bool) bool {
	again, by, err := r.lc.commitWait(r.cur, waiting, seen, accepts)
	switch {
	case err != nil:
		r.setFatal(err)
	case by != "":
		r.setFatal(&cancelled{by})
	case again:
		return true
	default:
		r.setFatal(&suspended{waiting: waiting, meta: r.lc.snapshot()})
	}
	return false
}

// suspend handles a builtin's request to wait. It reports whether Fn should
// be called again now (after an in-process wait, or because a message
// arrived); otherwise the execution stops (r.fatal says why). seen is the
// run's inbox position before the builtin looked at its inbox.
func (r *run) suspend(c *Call, b *Builtin, s *Suspend, pos string, seen uint64) bool {
	w := journal.CallWaiting{Step: c.Step, Reason: s.Reason}
	if !s.Until.IsZero() {
		u := s.Until.UTC()
		w.Until = &u
	}
	if s.Data != nil {
		data, err := json.Marshal(s.Data)
		if err != nil {
			r.setFatal(fmt.Errorf("%s: wait data cannot be journaled: %w", b.Name, err))
			return false
		}
		w.Data = data
	}
	if c.Wait == nil || !sameWait(c.Wait, &w) {
		// The wait (a wake-up time, a question) is made as durable as a
		// call result, so a resumed run does not wait anew.
		if err := r.cur.wait(w); err != nil {
			r.setFatal(err)
			return false
		}
		c.Wait = &w
	}
	waiting := &journal.Waiting{Step: c.Step, Builtin: b.Name, Reason: s.Reason, Until: w.Until, Pos: pos, Data: w.Data}
	accepts := b.Accept != nil
	// Waits for messages are not skipped under SkipWaits: the caller
	// decides whether to answer them or move the clock (Runtime.Advance).
	inline := !(r.rt.opts.SkipWaits && accepts)
	if w.Until != nil && r.rt.opts.MaxInlineWait >= 0 && inline {
		d := w.Until.Sub(r.rt.now())
		if d <= r.rt.opts.MaxInlineWait {
			r.callEvent(CallEvent{Step: c.Step, Builtin: b.Name, Outcome: "waiting", Wait: d})
			return r.waitHere(waiting, d, seen, accepts)
		}
	}
	return r.commitWait(waiting, seen, accepts)
}

// CallEvent describes what happened at a builtin call, for logs and
// metrics (Options.OnCall).
type CallEvent struct {
	RunID    string
	Step     string
	Builtin  string
	Outcome  string        // ok, error, replayed, retry (an attempt failed; another follows), waiting (in process)
	Duration time.Duration // ok and error: the whole call, retries included
	Attempts int           // ok, error: attempts made; retry: the attempt that failed
	Kind     string        // error, retry: the error's kind
	Wait     time.Duration // retry: the backoff before the next attempt; waiting: how long
}

// callEvent logs a call's progress line and tells the observer.
func (r *run) callEvent(ev CallEvent) {
	ev.RunID = r.id
	if r.dry {
		return
	}
	l := r.log.Info().Str("step", ev.Step).Str("builtin", ev.Builtin).Str("outcome", ev.Outcome)
	switch ev.Outcome {
	case "ok", "error":
		l = l.Dur("duration", ev.Duration).Int("attempts", ev.Attempts)
	case "retry":
		l = l.Int("attempt", ev.Attempts).Dur("wait", ev.Wait)
	case "waiting":
		l = l.Dur("for", ev.Wait)
	}
	if ev.Kind != "" {
		l = l.Str("kind", ev.Kind)
	}
	l.Msg("call")
	if f := r.rt.opts.OnCall; f != nil {
		f(ev)
	}
}

func sameWait(a, b *journal.CallWaiting) bool {
	if a.Reason != b.Reason || string(a.Data) != string(b.Data) || (a.Until == nil) != (b.Until == nil) {
		return false
	}
	return a.Until == nil || a.Until.Equal(*b.Until)
}

// pause waits d on the runtime's clock, or until woken; false means the
// run was stopped.
func (r *run) pause(d time.Duration) bool {
	if d > 0 && r.rt.opts.SkipWaits {
		r.rt.skip(d)
		d = 0
	}
	if d <= 0 {
		return r.ctx.Err() == nil && !r.rt.draining()
	}
	return r.rt.opts.Sleep(r.ctx, d, r.lc.kick, r.rt.drain)
}

// stopped records why the run's context ended.
func (r *run) stopped() error {
	if by := r.cancelRequested(); by != "" {
		return r.setFatal(&cancelled{by})
	}
	return r.setFatal(interrupted{})
}

// emitLog writes a script's log line, unless the run is replaying (the line
// was emitted when the call it follows first ran).
func (r *run) emitLog(thread *starlark.Thread, level zerolog.Level, msg string, fields *starlark.Dict) error {
	if r.replaying() || r.dry {
		return nil
	}
	pos := callerPos(thread, 1)
	ev := r.log.WithLevel(level).Str("source", "script").Str("pos", pos)
	var enc json.RawMessage
	if fields != nil && fields.Len() > 0 {
		b, err := value.Encode(fields)
		if err != nil {
			return fmt.Errorf("log: %v", err)
		}
		enc = b
		for _, kv := range fields.Items() {
			k, _ := starlark.AsString(kv[0])
			if s, ok := kv[1].(starlark.String); ok {
				ev = ev.Str(k, string(s))
			} else {
				kb, _ := value.Encode(kv[1])
				ev = ev.RawJSON(k, kb)
			}
		}
	}
	ev.Msg(msg)
	r.cur.add(journal.TypeLog, journal.Log{Level: level.String(), Message: msg, Fields: enc, Pos: pos})
	return nil
}

// finish turns how main ended into the run's new state.
func (r *run) finish(result starlark.Value, err error) (*Outcome, error) {
	out := &Outcome{ID: r.id, Stats: r.stats}
	if f, ok := r.fatal.(*suspended); ok {
		// Committed at the call boundary; the execution is over.
		out.Status, out.Waiting, out.Run = journal.StatusWaiting, f.waiting, f.meta
		return out, nil
	}
	if r.fatal == nil && err != nil {
		if le := r.guard.exceeded(evalPos(err)); le != nil {
			r.fatal = le
		}
	}
	if by := r.cancelRequested(); by != "" && (r.fatal != nil || err != nil) {
		// Cancelled at a builtin boundary or mid-computation. (A script
		// that returned before noticing is completed, not cancelled.)
		return r.end(out, journal.StatusCancelled, nil, &journal.RunError{Kind: "cancelled", Message: "cancelled by " + by}, by)
	}
	switch f := r.fatal.(type) {
	case *cancelled:
		return r.end(out, journal.StatusCancelled, nil, &journal.RunError{Kind: "cancelled", Message: "cancelled by " + f.by}, f.by)
	case interrupted:
		meta, ferr := r.lc.interrupt(r.cur)
		if ferr != nil {
			return nil, ferr
		}
		out.Status, out.Run = journal.StatusRunning, meta
		return out, ErrInterrupted
	case *DivergenceError:
		return r.end(out, journal.StatusDiverged, nil, &journal.RunError{Kind: "divergence", Message: f.Error(), Pos: f.GotPos}, "")
	case *LimitError:
		return r.end(out, journal.StatusFailed, nil, &journal.RunError{Kind: "limit", Message: f.Error(), Pos: f.Pos, Backtrace: backtrace(err)}, "")
	case nil:
	default:
		// The store failed, the journal is corrupt, or worse: nothing
		// more is written; the run stays as the journal last says.
		r.lc.abandon()
		return nil, r.fatal
	}
	if err != nil {
		rerr := &journal.RunError{Kind: "script", Message: err.Error()}
		var ee *starlark.EvalError
		if errors.As(err, &ee) {
			rerr.Message = ee.Msg
			rerr.Backtrace = ee.Backtrace()
			for i := len(ee.CallStack) - 1; i >= 0; i-- {
				if p := ee.CallStack[i].Pos; p.IsValid() && p.Filename() != "<builtin>" {
					rerr.Pos = p.String()
					break
				}
			}
		}
		var ce *CallError
		if errors.As(err, &ce) {
			rerr.Kind = ce.Kind
		}
		return r.end(out, journal.StatusFailed, nil, rerr, "")
	}
	if r.cur.consumedCompleted < r.cur.recordedCompleted {
		// The script finished without making calls the journal holds.
		return r.end(out, journal.StatusDiverged, nil, r.removedCall(), "")
	}
	res, jerr := value.ToJSON(result)
	if jerr != nil {
		return r.end(out, journal.StatusFailed, nil, &journal.RunError{Kind: "result", Message: "main returned a value that is not JSON: " + jerr.Error()}, "")
	}
	if len(res) > journal.MaxRecordBytes {
		return r.end(out, journal.StatusFailed, nil, &journal.RunError{Kind: "result", Message: fmt.Sprintf("main returned %d bytes of JSON, more than the journal's limit of %d bytes", len(res), journal.MaxRecordBytes)}, "")
	}
	return r.end(out, journal.StatusCompleted, res, nil, "")
}

// removedDivergence describes the first recorded call, in step order, that
// the script finished without making.
func (r *run) removedDivergence() *DivergenceError { return r.cur.removedDivergence(r.main.n) }

func (r *run) removedCall() *journal.RunError {
	de := r.removedDivergence()
	return &journal.RunError{Kind: "divergence", Message: de.Error(), Pos: de.RecordedPos}
}

// evalPos is the script position where an evaluation error happened.
func evalPos(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return callerPosOf(ee)
	}
	return ""
}

func backtrace(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Backtrace()
	}
	return ""
}

// end writes the run's final record.
func (r *run) end(out *Outcome, status journal.Status, result json.RawMessage, rerr *journal.RunError, by string) (*Outcome, error) {
	meta, err := r.lc.finish(r.cur, status, result, rerr, by)
	if err != nil {
		return nil, err
	}
	out.Status, out.Result, out.Error, out.Run = status, result, rerr, meta
	return out, nil
}

// Exported helpers for builtins that are not journaled calls.

// EmitLog writes a script log line (the log() builtin): suppressed while the
// run replays, journaled as a log record otherwise.
func EmitLog(thread *starlark.Thread, level zerolog.Level, msg string, fields *starlark.Dict) error {
	r, _ := thread.Local(runKey).(*run)
	if r == nil {
		return fmt.Errorf("log can only be called inside a starflow run")
	}
	return r.emitLog(thread, level, msg, fields)
}

// Recoverable reports whether err, raised inside a run, may be handled by
// the script (attempt()). Suspension, cancellation, interruption,
// divergence, exceeded limits and journal failures may not: they end the
// execution whatever the script does.
func Recoverable(thread *starlark.Thread, err error) bool {
	r, _ := thread.Local(runKey).(*run)
	if r == nil {
		return true
	}
	return r.fatal == nil && r.cancelRequested() == "" && r.ctx.Err() == nil
}

// ErrorKind returns the class of an error a script caught: the builtin's
// error kind for journaled call failures, "script" otherwise.
func ErrorKind(err error) string {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return "script"
}

// ErrorMessage returns the message of an error a script caught, without the
// interpreter's backtrace.
func ErrorMessage(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		var ce *CallError
		if errors.As(err, &ce) {
			return ce.Error()
		}
		return ee.Msg
	}
	return err.Error()
}

// SetRunValue stores a run-scoped setting, for example a script-wide default
// that a module's configuration function sets and its builtins read with
// Call.RunValue. Settings live for one execution: scripts set them again as
// they replay, so they need no journal.
func SetRunValue(thread *starlark.Thread, key string, v any) error {
	r, _ := thread.Local(runKey).(*run)
	if r == nil {
		return fmt.Errorf("can only be called inside a starflow run")
	}
	if r.values == nil {
		r.values = map[string]any{}
	}
	r.values[key] = v
	return nil
}

// RunValueOf returns a run-scoped setting stored with SetRunValue, or nil.
func RunValueOf(thread *starlark.Thread, key string) any {
	r, _ := thread.Local(runKey).(*run)
	if r == nil {
		return nil
	}
	return r.values[key]
}

// SetProgress publishes a run's current state (the progress() builtin): it
// is readable from outside at once (Runtime.Progress) and stored with the
// run. It is not a step; while the run replays, the value published later
// (and stored) stays what others see.
func SetProgress(thread *starlark.Thread, v starlark.Value) error {
	r, _ := thread.Local(runKey).(*run)
	if r == nil {
		return fmt.Errorf("progress can only be called inside a starflow run")
	}
	enc, err := value.ToJSON(v)
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	if r.replaying() || r.dry {
		return nil
	}
	r.lc.setProgress(enc)
	r.cur.add(journal.TypeProgress, journal.Progress{Value: enc, Pos: callerPos(thread, 1)})
	return nil
}
