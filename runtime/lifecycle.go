package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/starflow/starflow/journal"
)

// lifecycle owns one run's state in this process: its metadata (it is the
// only writer of run metadata), the execution running it here if any, a
// cancel request, what the run waits for now, and its inbox position.
// Every change is a transition made under mu:
//
//   - begin, started: an execution claims the run and marks it executing
//     (or quarantines it after repeated crashes);
//   - enterWait, commitWait: the run waits in process, or suspends; a
//     message that arrived after the builtin looked at its inbox makes it
//     look again instead;
//   - finish, interrupt, abandon: the execution ends;
//   - send, cancel, retry, migrate: what others ask of the run.
//
// So the races between a message and a suspension, or a cancel and the
// end of a run, cannot happen: whichever transition comes second sees the
// first. A lifecycle lives in Runtime.runs while anyone holds it.
type lifecycle struct {
	rt   *Runtime
	id   string
	refs int // guarded by rt.mu

	mu       sync.Mutex
	meta     *journal.Run  // once loaded, authoritative: every write goes through here
	dirty    bool          // meta changed since it was last written
	exec     *run          // the execution in this process, if any
	done     chan struct{} // closed when exec ends
	cancelBy string        // a cancel asked of the execution
	wait     *journal.Waiting
	kick     chan struct{} // wakes an in-process wait
}

// lifecycle returns run id's lifecycle, holding it until release.
func (rt *Runtime) lifecycle(id string) *lifecycle {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	l := rt.runs[id]
	if l == nil {
		l = &lifecycle{rt: rt, id: id, kick: make(chan struct{}, 1)}
		rt.runs[id] = l
	}
	l.refs++
	return l
}

func (l *lifecycle) release() {
	l.rt.mu.Lock()
	defer l.rt.mu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(l.rt.runs, l.id)
	}
}

// loadLocked returns the run's metadata, reading it the first time.
func (l *lifecycle) loadLocked(ctx context.Context) (*journal.Run, error) {
	if l.meta != nil {
		return l.meta, nil
	}
	m, err := l.rt.store.Run(ctx, l.id)
	if errors.Is(err, journal.ErrNotFound) {
		return nil, errNoRun(l.id)
	}
	if err != nil {
		return nil, err
	}
	l.meta = m
	return m, nil
}

// writeLocked writes records with the run's metadata, atomically. On
// failure the metadata in memory is dropped: the store says what is true.
func (l *lifecycle) writeLocked(ctx context.Context, recs []journal.Record, durable bool) error {
	l.meta.UpdatedAt = l.rt.now().UTC()
	if err := l.rt.store.Append(context.WithoutCancel(ctx), l.id, recs, cloneRun(l.meta), durable); err != nil {
		l.meta = nil
		return err
	}
	l.dirty = false
	return nil
}

// write implements sink for the execution's cursor.
func (l *lifecycle) write(recs []journal.Record, durable, meta bool) error {
	ctx := context.Background()
	if !meta {
		return l.rt.store.Append(ctx, l.id, recs, nil, durable)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.loadLocked(ctx); err != nil {
		return err
	}
	return l.writeLocked(ctx, recs, durable)
}

func cloneRun(r *journal.Run) *journal.Run {
	if r == nil {
		return nil
	}
	c := *r
	if r.Waiting != nil {
		w := *r.Waiting
		c.Waiting = &w
	}
	if r.Executing != nil {
		e := *r.Executing
		c.Executing = &e
	}
	return &c
}

// endLocked ends the execution in this process.
func (l *lifecycle) endLocked() {
	l.exec = nil
	l.wait = nil
	l.cancelBy = ""
	if l.done != nil {
		close(l.done)
		l.done = nil
	}
}

// begin claims the run for execution r. It returns the run's metadata
// (a copy); a run that is final or quarantined is returned without being
// claimed (claimed false).
func (l *lifecycle) begin(ctx context.Context, r *run) (meta *journal.Run, claimed bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exec != nil {
		return nil, false, fmt.Errorf("run %s: %w in this process", l.id, ErrBusy)
	}
	m, err := l.loadLocked(ctx)
	if err != nil {
		return nil, false, err
	}
	if m.Status.Final() || m.Status == journal.StatusQuarantined {
		return cloneRun(m), false, nil
	}
	l.exec, l.done, l.cancelBy = r, make(chan struct{}), ""
	l.wait = nil
	if m.Status == journal.StatusWaiting && m.Waiting != nil {
		// While it replays toward the call it waits in, the run still
		// waits for what it waited for: answers to it are taken.
		w := *m.Waiting
		l.wait = &w
	}
	select {
	case <-l.kick: // a stale wake-up for an earlier execution
	default:
	}
	return cloneRun(m), true, nil
}

// started marks the run as executing in this process, in one write with a
// run.resumed record when it continues. A run found still marked as
// executing by another process instance was executing when that process
// died: after Options.MaxCrashes such deaths in a row with no new call
// completed, the run is quarantined instead (quarantined true; the
// execution must stop).
func (l *lifecycle) started(cur *cursor, resumed bool) (quarantined bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.meta
	if m.Executing != nil && m.Executing.Instance != l.rt.instance {
		m.Crashes++
	}
	if max := l.rt.opts.MaxCrashes; max > 0 && m.Crashes >= max {
		reason := fmt.Sprintf("the process died %d times in a row while executing this run, without completing a new call", m.Crashes)
		if cur.lastStep != "" {
			reason += " (the last journaled step is " + cur.lastStep + ")"
		}
		reason += "; it was set aside so that other runs go on. Find the cause (starflow history " + l.id + ", the process's logs: memory, a crash), then run it again with starflow retry " + l.id
		cur.add(journal.TypeRunQuarantined, journal.RunQuarantined{Crashes: m.Crashes, Reason: reason, Step: cur.lastStep})
		m.Status = journal.StatusQuarantined
		m.Executing, m.Waiting = nil, nil
		m.Error = &journal.RunError{Kind: "quarantined", Message: reason}
		if err := l.writeLocked(context.Background(), cur.drain(), true); err != nil {
			l.endLocked()
			return false, &storeFailure{err}
		}
		l.endLocked()
		return true, nil
	}
	host := hostname()
	m.Executing = &journal.Execution{PID: os.Getpid(), Host: host, Instance: l.rt.instance, Since: l.rt.now().UTC(), Step: cur.lastStep}
	if resumed {
		cur.add(journal.TypeRunResumed, journal.RunResumed{PID: os.Getpid(), Host: host})
	}
	m.Status, m.Waiting = journal.StatusRunning, nil
	if err := l.writeLocked(context.Background(), cur.drain(), false); err != nil {
		return false, &storeFailure{err}
	}
	return false, nil
}

// repairFinished makes the metadata of a run whose journal ends with
// run.finished say so: the journal is the truth (after a power loss the
// store may hold an older version of the metadata), and a finished run is
// never executed again.
func (l *lifecycle) repairFinished(fin journal.Record) (*journal.Run, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var f journal.RunFinished
	if err := fin.Decode(&f); err != nil {
		l.endLocked()
		return nil, &journal.CorruptError{RunID: l.id, Seq: fin.Seq, Reason: err.Error()}
	}
	at := fin.Time.UTC()
	m := l.meta
	m.Status, m.Result, m.Error, m.Waiting, m.FinishedAt = f.Status, f.Result, f.Error, nil, &at
	m.Executing, m.Crashes = nil, 0
	err := l.writeLocked(context.Background(), nil, true)
	out := cloneRun(m)
	l.endLocked()
	if err != nil {
		return nil, &storeFailure{err}
	}
	l.rt.log.Warn().Str("run", l.id).Str("status", string(f.Status)).Msg("the run's metadata did not say it had finished, as its journal does: repaired")
	return out, nil
}

// progressed notes that the execution completed a new call: the run is
// not crash-looping. It reports whether the metadata needs writing.
func (l *lifecycle) progressed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.meta != nil && l.meta.Crashes > 0 {
		l.meta.Crashes = 0
		l.dirty = true
	}
	return l.dirty
}

// setProgress records the value the script published with progress().
func (l *lifecycle) setProgress(v []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.meta != nil {
		l.meta.Progress = v
		l.dirty = true
	}
}

// isDirty reports whether the metadata changed since it was written.
func (l *lifecycle) isDirty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dirty
}

// inbox is the sequence number of the last message delivered to the run.
// A builtin that reads the inbox takes it first (see enterWait).
func (l *lifecycle) inbox() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.loadLocked(context.Background()); err != nil {
		return 0
	}
	return l.meta.Inbox
}

// enterWait makes w what the run waits for now, in process. When the
// wait may end with a message (accepts) and one arrived since the builtin
// looked at the inbox (seen), it does not: the builtin must look again
// (again true). A cancel asked meanwhile is reported.
func (l *lifecycle) enterWait(w *journal.Waiting, seen uint64, accepts bool) (again bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if accepts && l.meta != nil && l.meta.Inbox > seen {
		return true
	}
	l.wait = w
	return false
}

// leaveWait ends an in-process wait.
func (l *lifecycle) leaveWait() {
	l.mu.Lock()
	l.wait = nil
	l.mu.Unlock()
}

// commitWait suspends the run: status waiting with w, the cursor's
// records and the metadata in one durable write, and the execution ends.
// When a message that may end the wait arrived since the builtin looked
// at the inbox (seen), nothing is committed and again is true: the
// builtin must look again. A cancel asked meanwhile is returned as by.
func (l *lifecycle) commitWait(cur *cursor, w *journal.Waiting, seen uint64, accepts bool) (again bool, by string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancelBy != "" {
		return false, l.cancelBy, nil
	}
	if _, err := l.loadLocked(context.Background()); err != nil {
		l.endLocked()
		return false, "", &storeFailure{err}
	}
	if accepts && l.meta.Inbox > seen {
		l.wait = nil
		return true, "", nil
	}
	w.Inbox = l.meta.Inbox
	l.meta.Status = journal.StatusWaiting
	l.meta.Waiting = w
	l.meta.Executing, l.meta.Crashes = nil, 0
	if err := l.writeLocked(context.Background(), cur.drain(), true); err != nil {
		l.endLocked()
		return false, "", &storeFailure{err}
	}
	l.endLocked()
	return false, "", nil
}

// finish ends the run: run.finished and the final metadata in one durable
// write.
func (l *lifecycle) finish(cur *cursor, status journal.Status, result []byte, rerr *journal.RunError, by string) (*journal.Run, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, err := l.loadLocked(context.Background())
	if err != nil {
		l.endLocked()
		return nil, &storeFailure{err}
	}
	cur.add(journal.TypeRunFinished, journal.RunFinished{Status: status, Result: result, Error: rerr, CancelledBy: by})
	now := l.rt.now().UTC()
	m.Status, m.Result, m.Error, m.Waiting = status, result, rerr, nil
	m.FinishedAt = &now
	m.Executing, m.Crashes = nil, 0
	if cur.sink == nil {
		l.endLocked()
		return cloneRun(m), nil
	}
	err = l.writeLocked(context.Background(), cur.drain(), true)
	out := cloneRun(m)
	l.endLocked()
	if err != nil {
		return nil, &storeFailure{err}
	}
	return out, nil
}

// interrupt ends an execution that was stopped from outside (a drain, the
// caller's context): what it did is written, and the run stays running,
// resumable, no longer marked as executing.
func (l *lifecycle) interrupt(cur *cursor) (*journal.Run, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.loadLocked(context.Background()); err != nil {
		l.endLocked()
		return nil, &storeFailure{err}
	}
	l.meta.Executing = nil
	err := l.writeLocked(context.Background(), cur.drain(), true)
	out := cloneRun(l.meta)
	l.endLocked()
	if err != nil {
		return nil, &storeFailure{err}
	}
	return out, nil
}

// abandon ends an execution that could not go on (the store failed, the
// journal is corrupt); nothing more is written. The metadata is read
// again next time.
func (l *lifecycle) abandon() {
	l.mu.Lock()
	l.meta = nil
	l.endLocked()
	l.mu.Unlock()
}

// Delivery is what became of a message sent to a run.
type Delivery struct {
	Message journal.Message
	// Ends reports that the message ends what the run waits for now.
	Ends bool
	// Resume reports that the run is not executing in this runtime and
	// the message ends its wait: the caller should resume it (a run
	// executing here acts on the message by itself).
	Resume bool
}

// send delivers a message (validated by the caller) to the run's inbox.
func (l *lifecycle) send(ctx context.Context, m journal.Message) (*Delivery, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	meta, err := l.loadLocked(ctx)
	if err != nil {
		return nil, err
	}
	if meta.Status.Final() {
		return nil, &InvalidError{Msg: fmt.Sprintf("run %s is %s; it takes no more messages", l.id, meta.Status), Code: CodeConflict}
	}
	// What the run waits for now: in this process, or as suspended.
	var w *journal.Waiting
	switch {
	case l.exec != nil:
		w = l.wait
	case meta.Status == journal.StatusWaiting:
		w = meta.Waiting
	}
	var b *Builtin
	if w != nil && !w.Retry {
		b = l.rt.builtins[w.Builtin]
	}
	ends := false
	if b != nil && b.Accept != nil {
		ends, err = b.Accept(w, &m)
		if err != nil {
			return nil, &InvalidError{Msg: fmt.Sprintf("%s rejected: %v; run %s keeps waiting", m.Kind, err, l.id), Code: CodeRejected}
		}
	}
	if m.Kind == journal.MessageAnswer && !ends {
		// Answers are for the question being asked now, not for later.
		if w == nil {
			return nil, &InvalidError{Msg: fmt.Sprintf("run %s is not waiting for an answer (status %s)", l.id, meta.Status), Code: CodeConflict}
		}
		return nil, &InvalidError{Msg: fmt.Sprintf("run %s waits in %s, which takes no answers", l.id, w.Builtin), Code: CodeConflict}
	}
	next := cloneRun(meta)
	next.UpdatedAt = l.rt.now().UTC()
	seq, err := l.rt.store.Deliver(context.WithoutCancel(ctx), l.id, m, next)
	if err != nil {
		l.meta = nil
		return nil, err
	}
	m.Seq = seq
	next.Inbox = seq
	l.meta = next
	l.dirty = false
	d := &Delivery{Message: m, Ends: ends}
	if l.exec != nil {
		// Executing here: an in-process wait is woken; a run about to
		// wait sees the message when it commits (enterWait, commitWait).
		select {
		case l.kick <- struct{}{}:
		default:
		}
	} else {
		d.Resume = ends && meta.Status == journal.StatusWaiting
	}
	return d, nil
}

// cancel stops the run. An execution in this process is asked to stop at
// its next builtin boundary and awaited; otherwise the run is finished as
// cancelled here.
func (l *lifecycle) cancel(ctx context.Context, by string) (*journal.Run, error) {
	l.mu.Lock()
	if r := l.exec; r != nil {
		if l.cancelBy == "" {
			l.cancelBy = by
		}
		done := l.done
		r.requestCancel(by)
		l.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		m, err := l.loadLocked(ctx)
		if err != nil {
			return nil, err
		}
		return cloneRun(m), nil
	}
	defer l.mu.Unlock()
	meta, err := l.loadLocked(ctx)
	if err != nil {
		return nil, err
	}
	if meta.Status.Final() {
		return cloneRun(meta), &InvalidError{Msg: fmt.Sprintf("run %s is already %s", l.id, meta.Status), Code: CodeConflict}
	}
	recs, err := l.rt.store.Records(ctx, l.id, 1)
	if err != nil {
		return nil, err
	}
	now := l.rt.now().UTC()
	rerr := &journal.RunError{Kind: "cancelled", Message: "cancelled by " + by}
	rec, err := journal.NewRecord(uint64(len(recs))+1, journal.TypeRunFinished, now, journal.RunFinished{Status: journal.StatusCancelled, Error: rerr, CancelledBy: by})
	if err != nil {
		return nil, err
	}
	meta.Status, meta.Error, meta.Waiting, meta.FinishedAt = journal.StatusCancelled, rerr, nil, &now
	meta.Executing = nil
	if err := l.writeLocked(ctx, []journal.Record{rec}, true); err != nil {
		return nil, err
	}
	return cloneRun(l.meta), nil
}

// retry releases a quarantined run: it is running again, its crash count
// cleared, ready to be resumed.
func (l *lifecycle) retry(ctx context.Context, by string) (*journal.Run, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	meta, err := l.loadLocked(ctx)
	if err != nil {
		return nil, err
	}
	if meta.Status != journal.StatusQuarantined {
		return cloneRun(meta), &InvalidError{Msg: fmt.Sprintf("run %s is %s, not quarantined; only a quarantined run is retried (an interrupted run continues with starflow resume)", l.id, meta.Status), Code: CodeConflict}
	}
	recs, err := l.rt.store.Records(ctx, l.id, 1)
	if err != nil {
		return nil, err
	}
	rec, err := journal.NewRecord(uint64(len(recs))+1, journal.TypeRunRetried, l.rt.now().UTC(), journal.RunRetried{By: by})
	if err != nil {
		return nil, err
	}
	meta.Status, meta.Error, meta.Crashes, meta.Executing = journal.StatusRunning, nil, 0, nil
	if err := l.writeLocked(ctx, []journal.Record{rec}, true); err != nil {
		return nil, err
	}
	return cloneRun(l.meta), nil
}

// snapshot returns a copy of the run's metadata as this lifecycle has it
// (nil if it is not loaded).
func (l *lifecycle) snapshot() *journal.Run {
	l.mu.Lock()
	defer l.mu.Unlock()
	return cloneRun(l.meta)
}

// current returns what the run waits for now and its metadata.
func (l *lifecycle) current(ctx context.Context) (*journal.Waiting, *journal.Run, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, err := l.loadLocked(ctx)
	if err != nil {
		return nil, nil, err
	}
	if l.exec != nil {
		if l.wait == nil {
			return nil, cloneRun(m), nil
		}
		w := *l.wait
		return &w, cloneRun(m), nil
	}
	if m.Status != journal.StatusWaiting || m.Waiting == nil {
		return nil, cloneRun(m), nil
	}
	w := *m.Waiting
	return &w, cloneRun(m), nil
}
