package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
)

// CheckReport is the outcome of replaying a recorded run against new code.
type CheckReport struct {
	RunID      string
	OK         bool             // the new code reproduces the whole journal
	Replayed   int              // journaled calls the new code made, in order, with the same arguments
	Journaled  int              // completed calls in the journal
	StoppedAt  string           // where the check ended: the first call beyond the journal, or "main returned"
	Divergence *DivergenceError // the first mismatch, if any
	Error      *journal.RunError
}

// Summary is one line for people.
func (c *CheckReport) Summary() string {
	switch {
	case c.Divergence != nil:
		return c.Divergence.Error()
	case c.Error != nil:
		return fmt.Sprintf("the new code fails while replaying run %s: %s", c.RunID, c.Error.Error())
	}
	return fmt.Sprintf("run %s replays on the new code: %d of %d journaled calls reproduced; %s", c.RunID, c.Replayed, c.Journaled, c.StoppedAt)
}

// ErrCheckFailed is returned by Migrate when the new code does not
// reproduce the run's journal.
var ErrCheckFailed = errors.New("replay check failed")

// Check replays run id against another version of its script — entry file
// script, read from sources if given, else from disk — without executing
// any builtin and without writing anything. It reports the first
// divergence with both positions, or that the new code reproduces the
// journal (an edit after the last journaled call passes). Use it to vet a
// deploy against in-flight runs.
func (rt *Runtime) Check(ctx context.Context, id, script string, sources map[string][]byte) (*CheckReport, error) {
	meta, err := rt.store.Run(ctx, id)
	if errors.Is(err, journal.ErrNotFound) {
		return nil, errNoRun(id)
	}
	if err != nil {
		return nil, err
	}
	recs, err := rt.store.Records(ctx, id, 1)
	if err != nil {
		return nil, err
	}
	rep, _, err := rt.check(ctx, meta, recs, script, sources)
	return rep, err
}

func (rt *Runtime) check(ctx context.Context, meta *journal.Run, recs []journal.Record, script string, sources map[string][]byte) (*CheckReport, *journal.Manifest, error) {
	r := &run{rt: rt, id: meta.ID, dry: true}
	cur, err := newCursor(meta.ID, recs, nil, rt.now)
	if err != nil {
		return nil, nil, err
	}
	r.cur = cur
	req := StartRequest{Script: ScriptName(script), Sources: sources}
	files, err := readScripts(req)
	if err != nil {
		return nil, nil, err
	}
	prog, err := rt.compileAll(req.Script, files, r.cur.started.Dialect)
	if err != nil {
		return nil, nil, err
	}
	manifest := &journal.Manifest{Entry: req.Script, Files: map[string]string{}}
	for name, src := range files {
		manifest.Files[name] = blobHash(src)
	}
	r.prog = prog
	r.parent = ctx
	r.ctx, r.stopCtx = context.WithCancel(ctx)
	defer r.stopCtx()
	r.log = zerolog.Nop()

	_, runErr := r.runMain()
	rep := &CheckReport{RunID: meta.ID, Replayed: r.stats.Replayed, Journaled: r.cur.recordedCompleted}
	switch f := r.fatal.(type) {
	case *reachedLive:
		rep.OK = true
		rep.StoppedAt = fmt.Sprintf("the first call beyond the journal is step %s, %s() at %s", f.step, f.builtin, f.pos)
		return rep, manifest, nil
	case *DivergenceError:
		rep.Divergence = f
		return rep, manifest, nil
	case *LimitError:
		rep.Error = &journal.RunError{Kind: "limit", Message: f.Error(), Pos: f.Pos}
		return rep, manifest, nil
	case *storeFailure, *journal.CorruptError:
		return nil, nil, r.fatal
	case nil:
	default:
		return nil, nil, r.fatal
	}
	if runErr != nil {
		rep.Error = &journal.RunError{Kind: "script", Message: runErr.Error()}
		var ee *starlark.EvalError
		if errors.As(runErr, &ee) {
			rep.Error.Message = ee.Msg
			if p := callerPosOf(ee); p != "" {
				rep.Error.Pos = p
			}
		}
		return rep, manifest, nil
	}
	if r.cur.consumedCompleted < r.cur.recordedCompleted {
		rep.Divergence = r.removedDivergence()
		return rep, manifest, nil
	}
	rep.OK = true
	rep.StoppedAt = "main returned"
	return rep, manifest, nil
}

func callerPosOf(ee *starlark.EvalError) string {
	for i := len(ee.CallStack) - 1; i >= 0; i-- {
		if p := ee.CallStack[i].Pos; p.IsValid() && p.Filename() != "<builtin>" {
			return p.String()
		}
	}
	return ""
}

// Migrate moves a run that has not finished to new code, only if Check
// passes; the journal records the move (run.migrated) and later executions
// use the new code. It returns the check's report, with ErrCheckFailed if
// the run was not moved.
func (rt *Runtime) Migrate(ctx context.Context, id, script string, sources map[string][]byte) (*CheckReport, error) {
	l := rt.lifecycle(id)
	defer l.release()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exec != nil {
		return nil, fmt.Errorf("run %s: %w in this process", id, ErrBusy)
	}
	meta, err := l.loadLocked(ctx)
	if err != nil {
		return nil, err
	}
	meta = cloneRun(meta)
	if meta.Status.Final() {
		return nil, &InvalidError{Msg: fmt.Sprintf("run %s is %s; only unfinished runs move to new code", id, meta.Status), Code: CodeConflict}
	}
	recs, err := rt.store.Records(ctx, id, 1)
	if err != nil {
		return nil, err
	}
	rep, manifest, err := rt.check(ctx, meta, recs, script, sources)
	if err != nil {
		return nil, err
	}
	if !rep.OK {
		return rep, fmt.Errorf("%w: %s", ErrCheckFailed, rep.Summary())
	}
	files, err := readScripts(StartRequest{Script: manifest.Entry, Sources: sources})
	if err != nil {
		return nil, err
	}
	for _, src := range files {
		if _, err := rt.store.PutBlob(ctx, src); err != nil {
			return nil, err
		}
	}
	rec, err := journal.NewRecord(uint64(len(recs))+1, journal.TypeRunMigrated, rt.now().UTC(),
		journal.RunMigrated{Script: *manifest, From: meta.ScriptHash, Replayed: rep.Replayed})
	if err != nil {
		return nil, err
	}
	l.meta.Script = manifest.Entry
	l.meta.ScriptHash = manifestHash(*manifest)
	if err := l.writeLocked(ctx, []journal.Record{rec}, true); err != nil {
		return nil, err
	}
	return rep, nil
}

// ForkRequest describes a fork.
type ForkRequest struct {
	// ID names the new run (default: a new ULID).
	ID string
	// At keeps the first At calls of the original (by step) and continues
	// live from call At+1. 0 keeps none: the same input, run afresh.
	At int
	// SetResult, if set, replaces call At's outcome with this JSON value
	// (for a struct or dict result, an object is merged over it field by
	// field: {"text": "..."} changes only an llm() answer's text).
	SetResult json.RawMessage
	// Script and Sources, if set, run the fork on other code.
	Script  string
	Sources map[string][]byte
}

// Fork records a new run that reuses run id's journal up to call At (by
// step), optionally with call At's result replaced and on other code, and
// records its origin. Resume executes it; both runs stay inspectable.
func (rt *Runtime) Fork(ctx context.Context, id string, req ForkRequest) (*Outcome, error) {
	if _, err := rt.store.Run(ctx, id); errors.Is(err, journal.ErrNotFound) {
		return nil, errNoRun(id)
	} else if err != nil {
		return nil, err
	}
	recs, err := rt.store.Records(ctx, id, 1)
	if err != nil {
		return nil, err
	}
	if req.ID == "" {
		req.ID = NewID()
	} else if err := journal.ValidateID(req.ID); err != nil {
		return nil, &InvalidError{Msg: err.Error()}
	}
	var st journal.RunStarted
	if err := recs[0].Decode(&st); err != nil {
		return nil, err
	}
	for _, rec := range recs[1:] {
		if rec.Type == journal.TypeRunMigrated {
			var rm journal.RunMigrated
			if err := rec.Decode(&rm); err == nil {
				st.Script = rm.Script
			}
		}
	}
	if req.At < 0 {
		return nil, &InvalidError{Msg: fmt.Sprintf("--at %d: want a call number from 0", req.At)}
	}
	if req.Script != "" {
		files, err := readScripts(StartRequest{Script: ScriptName(req.Script), Sources: req.Sources})
		if err != nil {
			return nil, err
		}
		if _, err := rt.compileAll(ScriptName(req.Script), files, st.Dialect); err != nil {
			return nil, err
		}
		st.Script = journal.Manifest{Entry: ScriptName(req.Script), Files: map[string]string{}}
		for name, src := range files {
			h, err := rt.store.PutBlob(ctx, src)
			if err != nil {
				return nil, err
			}
			st.Script.Files[name] = h
		}
	}
	st.Origin = &journal.Origin{Run: id, At: req.At, SetResult: req.SetResult != nil}

	mainStep := func(step string) int {
		head, _, _ := strings.Cut(step, ".")
		n, _ := strconv.Atoi(head)
		return n
	}
	now := rt.now().UTC()
	first, err := journal.NewRecord(1, journal.TypeRunStarted, now, st)
	if err != nil {
		return nil, err
	}
	out := []journal.Record{first}
	maxStep, atCompleted := 0, false
	var atStarted *journal.CallStarted
	for _, rec := range recs[1:] {
		var step string
		switch rec.Type {
		case journal.TypeCallStarted:
			cs, err := rec.DecodeCallStarted()
			if err != nil {
				return nil, err
			}
			step = cs.Step
			if n := mainStep(step); n > maxStep {
				maxStep = n
			}
			if step == strconv.Itoa(req.At) {
				c := cs
				atStarted = &c
			}
		case journal.TypeCallCompleted:
			cc, err := rec.DecodeCallCompleted()
			if err != nil {
				return nil, err
			}
			step = cc.Step
			if step == strconv.Itoa(req.At) {
				atCompleted = true
				if req.SetResult != nil {
					continue // replaced below
				}
			}
		case journal.TypeCallWaiting:
			var cw journal.CallWaiting
			if err := rec.Decode(&cw); err != nil {
				return nil, err
			}
			step = cw.Step
			if step == strconv.Itoa(req.At) && req.SetResult != nil {
				continue
			}
		case journal.TypeLog, journal.TypeProgress:
			out = append(out, rec)
			continue
		default:
			continue // run.resumed, run.migrated, run.finished: not the fork's history
		}
		if mainStep(step) > req.At {
			break
		}
		out = append(out, rec)
	}
	if req.At > maxStep {
		return nil, &InvalidError{Msg: fmt.Sprintf("run %s made %d calls; --at %d is beyond them", id, maxStep, req.At)}
	}
	// Drop log and progress records after the last kept call.
	for len(out) > 1 && (out[len(out)-1].Type == journal.TypeLog || out[len(out)-1].Type == journal.TypeProgress) && req.At < maxStep {
		out = out[:len(out)-1]
	}
	if req.SetResult != nil {
		if req.At == 0 || atStarted == nil {
			return nil, &InvalidError{Msg: "--set-result needs --at naming a call of the run"}
		}
		enc, err := replaceResult(out, req.At, req.SetResult, recs, atCompleted)
		if err != nil {
			return nil, err
		}
		rec, err := journal.NewRecord(0, journal.TypeCallCompleted, now, journal.CallCompleted{Step: strconv.Itoa(req.At), Result: enc, Detail: json.RawMessage(`{"set_by_fork":true}`)})
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	for i := range out {
		out[i].Seq = uint64(i + 1)
	}
	fork := &journal.Run{
		ID: req.ID, Status: journal.StatusRunning, Script: st.Script.Entry, ScriptHash: manifestHash(st.Script),
		Durability: st.Durability, CreatedAt: now, UpdatedAt: now, Origin: st.Origin,
	}
	if err := rt.store.Create(ctx, fork, out); err != nil {
		if errors.Is(err, journal.ErrRunExists) {
			return nil, &InvalidError{Msg: fmt.Sprintf("run %s already exists; choose another --id for the fork", req.ID), Code: CodeConflict}
		}
		return nil, err
	}
	return &Outcome{ID: req.ID, Status: journal.StatusRunning, Run: fork}, nil
}

// replaceResult builds the journal form of a fork's replacement result,
// merging a JSON object over a struct or dict original.
func replaceResult(_ []journal.Record, at int, set json.RawMessage, recs []journal.Record, atCompleted bool) (json.RawMessage, error) {
	nv, err := value.FromJSON(set)
	if err != nil {
		return nil, &InvalidError{Msg: "--set-result is not valid JSON: " + err.Error()}
	}
	var orig starlark.Value
	if atCompleted {
		for _, rec := range recs {
			if rec.Type != journal.TypeCallCompleted {
				continue
			}
			cc, err := rec.DecodeCallCompleted()
			if err == nil && cc.Step == strconv.Itoa(at) && cc.Error == nil {
				orig, _ = value.Decode(cc.Result)
			}
		}
	}
	if d, ok := nv.(*starlark.Dict); ok {
		switch o := orig.(type) {
		case *starlarkstruct.Struct:
			fields := starlark.StringDict{}
			o.ToStringDict(fields)
			for _, kv := range d.Items() {
				k, ok := kv[0].(starlark.String)
				if !ok {
					return nil, &InvalidError{Msg: "--set-result: object keys must be strings"}
				}
				fields[string(k)] = kv[1]
			}
			nv = starlarkstruct.FromStringDict(starlarkstruct.Default, fields)
		case *starlark.Dict:
			merged := starlark.NewDict(o.Len())
			for _, kv := range o.Items() {
				merged.SetKey(kv[0], kv[1])
			}
			for _, kv := range d.Items() {
				merged.SetKey(kv[0], kv[1])
			}
			nv = merged
		}
	}
	return value.Encode(nv)
}
