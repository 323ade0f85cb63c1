package runtime

import (
	"fmt"
	"time"

	"github.com/starflow/starflow/journal"
)

// cursor is a run's position in its journal, owned by the one goroutine
// that executes (or checks) the run. It answers the calls the journal
// already holds, or reports how the script diverged from them; it numbers
// and buffers new records; and it decides when each record is written and
// how durably. It is the one place that write policy lives (spec/replay.md,
// "When records are written"):
//
//	record                    sync                 async        exit
//	call.started, Effect      written before Fn    written      buffered
//	call.started, otherwise   with its outcome     ditto        buffered
//	call.waiting              fsynced              written      buffered
//	call.completed            fsynced              written      buffered
//	log, progress             with the next write  ditto        buffered
//
// "Written" means handed to the store, which survives a crash of the
// process but not a power loss; "fsynced" means on stable storage before
// the script goes on. Suspension and the end of a run are always fsynced
// (the lifecycle writes them, with the run's metadata). A cursor has no
// goroutines and no store of its own: it hands records to a sink, so it
// can be tested like a replayer.
type cursor struct {
	runID   string
	started journal.RunStarted // the first record, with any migration applied
	index   map[string]*recordedCall

	recordedStarted   int // call.started records in the journal
	consumedStarted   int // of those, how many steps this execution reached
	recordedCompleted int // call.completed records in the journal
	consumedCompleted int // of those, how many this execution replayed
	consumed          map[uint64]bool
	lastStep          string // the last step the journal holds a record of

	nextSeq uint64
	pending []journal.Record
	sink    sink // nil: a dry check, nothing is written
	now     func() time.Time
}

// recordedCall is what the journal holds about one step.
type recordedCall struct {
	started   *journal.CallStarted
	waiting   *journal.CallWaiting
	completed *journal.CallCompleted
}

// sink stores a run's records. meta asks for the run's metadata to be
// written in the same atomic write.
type sink interface {
	write(recs []journal.Record, durable, meta bool) error
}

// newCursor indexes a run's journal. A journal that does not begin with
// run.started, or holds records that contradict each other, is corrupt.
func newCursor(runID string, recs []journal.Record, s sink, now func() time.Time) (*cursor, error) {
	c := &cursor{runID: runID, index: map[string]*recordedCall{}, consumed: map[uint64]bool{}, sink: s, now: now}
	if len(recs) == 0 || recs[0].Type != journal.TypeRunStarted {
		return nil, &journal.CorruptError{RunID: runID, Seq: 1, Reason: "the journal does not begin with a run.started record"}
	}
	if err := recs[0].Decode(&c.started); err != nil {
		return nil, &journal.CorruptError{RunID: runID, Seq: 1, Reason: err.Error()}
	}
	for _, rec := range recs[1:] {
		switch rec.Type {
		case journal.TypeRunMigrated:
			var rm journal.RunMigrated
			if err := rec.Decode(&rm); err != nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: err.Error()}
			}
			c.started.Script = rm.Script
		case journal.TypeCallStarted:
			cs, err := rec.DecodeCallStarted()
			if err != nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: err.Error()}
			}
			if c.index[cs.Step] != nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: "a second call.started for step " + cs.Step}
			}
			c.index[cs.Step] = &recordedCall{started: &cs}
			c.recordedStarted++
			c.lastStep = cs.Step
		case journal.TypeCallWaiting:
			var cw journal.CallWaiting
			if err := rec.Decode(&cw); err != nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: err.Error()}
			}
			rc := c.index[cw.Step]
			if rc == nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: "call.waiting for step " + cw.Step + " without call.started"}
			}
			rc.waiting = &cw
		case journal.TypeCallCompleted:
			cc, err := rec.DecodeCallCompleted()
			if err != nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: err.Error()}
			}
			rc := c.index[cc.Step]
			if rc == nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: "call.completed for step " + cc.Step + " without call.started"}
			}
			if rc.completed != nil {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: "a second call.completed for step " + cc.Step}
			}
			rc.completed = &cc
			c.recordedCompleted++
			c.lastStep = cc.Step
			for _, seq := range cc.Consumed {
				c.consumed[seq] = true
			}
		case journal.TypeRunFinished:
			if rec.Seq != uint64(len(recs)) {
				return nil, &journal.CorruptError{RunID: runID, Seq: rec.Seq, Reason: "records follow run.finished"}
			}
		}
	}
	c.nextSeq = uint64(len(recs)) + 1
	return c, nil
}

// replaying reports whether the execution is still behind the journal: a
// call the journal holds (completed, waiting or in flight) is still ahead.
func (c *cursor) replaying() bool { return c.consumedStarted < c.recordedStarted }

// match looks up step in the journal. It returns the recorded call (nil if
// the journal never got this far), or a *DivergenceError when the journal
// recorded a different call at this step.
func (c *cursor) match(step, builtin, digest, pos string, describe func() string) (*recordedCall, error) {
	rec := c.index[step]
	if rec == nil {
		return nil, nil
	}
	c.consumedStarted++
	if rec.started.Builtin != builtin || rec.started.Digest != digest {
		reason := "different arguments"
		if rec.started.Builtin != builtin {
			reason = "a different builtin"
		}
		return nil, &DivergenceError{
			RunID: c.runID, Step: step,
			Recorded: describeCall(rec.started.Builtin, rec.started.Args), RecordedPos: rec.started.Pos,
			Got: describe(), GotPos: pos, Reason: reason,
		}
	}
	if rec.completed != nil {
		c.consumedCompleted++
	}
	return rec, nil
}

// add numbers and buffers a record.
func (c *cursor) add(t journal.Type, payload any) {
	rec, err := journal.NewRecord(c.nextSeq, t, c.now().UTC(), payload)
	if err != nil {
		// Payloads are our own types; failing to encode them is a bug.
		panic(err)
	}
	c.nextSeq++
	c.pending = append(c.pending, rec)
}

// flush writes the buffered records (and the metadata, if meta).
func (c *cursor) flush(durable, meta bool) error {
	if c.sink == nil {
		c.pending = c.pending[:0]
		return nil
	}
	if len(c.pending) == 0 && !meta {
		return nil
	}
	if err := c.sink.write(c.pending, durable, meta); err != nil {
		return &storeFailure{err}
	}
	c.pending = c.pending[:0]
	return nil
}

// start records a call about to run for the first time. The record of a
// call that declares an effect (Builtin.Effect) is written before the
// effect (unless the run keeps records in memory until it stops), so that
// a crash during the call leaves a journal that says it was in flight.
func (c *cursor) start(cs journal.CallStarted, pure bool) error {
	c.add(journal.TypeCallStarted, cs)
	c.lastStep = cs.Step
	if pure || c.started.Durability == journal.DurabilityExit {
		return nil
	}
	return c.flush(false, false)
}

// wait records what a call waits for, as durably as a result: a resumed
// run must not wait anew.
func (c *cursor) wait(w journal.CallWaiting) error {
	c.add(journal.TypeCallWaiting, w)
	return c.flushOutcome(false)
}

// complete records a call's outcome, as durably as the run's mode asks,
// before the script sees it. meta also writes the run's metadata.
func (c *cursor) complete(cc journal.CallCompleted, meta bool) error {
	c.add(journal.TypeCallCompleted, cc)
	c.lastStep = cc.Step
	return c.flushOutcome(meta)
}

func (c *cursor) flushOutcome(meta bool) error {
	switch c.started.Durability {
	case journal.DurabilityExit:
		return nil // the metadata too waits for the run to stop
	case journal.DurabilityAsync:
		return c.flush(false, meta)
	default:
		return c.flush(true, meta)
	}
}

// removedDivergence describes the first recorded call, in step order, that
// the script finished without making (main made mainCalls calls).
func (c *cursor) removedDivergence(mainCalls int) *DivergenceError {
	best, bestN := "", -1
	for step, rc := range c.index {
		if rc.completed == nil {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(step, "%d", &n); err != nil || fmt.Sprint(n) != step {
			continue
		}
		if n > mainCalls && (bestN < 0 || n < bestN) {
			best, bestN = step, n
		}
	}
	de := &DivergenceError{RunID: c.runID, Step: best, Reason: "call removed"}
	if rc := c.index[best]; rc != nil {
		de.Recorded = describeCall(rc.started.Builtin, rc.started.Args)
		de.RecordedPos = rc.started.Pos
	}
	return de
}

// drain hands over the buffered records, for a write the caller makes.
func (c *cursor) drain() []journal.Record {
	recs := c.pending
	c.pending = nil
	return recs
}
