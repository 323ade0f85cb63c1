// Package view turns runs and journals into the shapes people and clients
// read: `starflow show --json`, `starflow history --json`, and the API.
package view

import (
	"encoding/json"
	"time"

	"github.com/starflow/starflow/journal"
)

// Run is a run as `starflow show --json` and the API present it.
type Run struct {
	ID         string             `json:"id"`
	Status     journal.Status     `json:"status"`
	Result     json.RawMessage    `json:"result"`
	Error      *journal.RunError  `json:"error"`
	Waiting    *journal.Waiting   `json:"waiting,omitempty"`
	Script     string             `json:"script"`
	ScriptHash string             `json:"script_hash"`
	Durability journal.Durability `json:"durability"`
	CreatedAt  time.Time          `json:"created_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
	Progress   json.RawMessage    `json:"progress,omitempty"`
	Origin     *journal.Origin    `json:"origin,omitempty"`
	Calls      CallCounts         `json:"calls"`
	Records    int                `json:"records"`
	Resumes    int                `json:"resumes"`
	// Executing is the process last marked as executing the run; with
	// status running and no process executing it now, that process died
	// during the run.
	Executing *journal.Execution `json:"executing,omitempty"`
	Crashes   int                `json:"crashes,omitempty"`
}

// CallCounts counts a run's calls by outcome.
type CallCounts struct {
	Total     int `json:"total"`     // calls started
	Completed int `json:"completed"` // with a result
	Failed    int `json:"failed"`    // with an error
	Retried   int `json:"retried"`   // that needed more than one attempt
	InFlight  int `json:"in_flight"` // started, neither completed nor waiting
	Waiting   int `json:"waiting"`
}

// Of builds the view of a run from its metadata and journal.
func Of(meta *journal.Run, recs []journal.Record) Run {
	v := Run{ID: meta.ID, Status: meta.Status, Result: meta.Result, Error: meta.Error, Waiting: meta.Waiting,
		Script: meta.Script, ScriptHash: meta.ScriptHash, Durability: meta.Durability,
		CreatedAt: meta.CreatedAt, UpdatedAt: meta.UpdatedAt, FinishedAt: meta.FinishedAt, Records: len(recs), Progress: meta.Progress, Origin: meta.Origin,
		Executing: meta.Executing, Crashes: meta.Crashes}
	if v.Result == nil {
		v.Result = json.RawMessage("null")
	}
	open := map[string]bool{}
	waiting := map[string]bool{}
	for _, r := range recs {
		switch r.Type {
		case journal.TypeCallStarted:
			var cs journal.CallStarted
			r.Decode(&cs)
			v.Calls.Total++
			open[cs.Step] = true
		case journal.TypeCallWaiting:
			var cw journal.CallWaiting
			r.Decode(&cw)
			waiting[cw.Step] = true
		case journal.TypeCallCompleted:
			var cc journal.CallCompleted
			r.Decode(&cc)
			delete(open, cc.Step)
			delete(waiting, cc.Step)
			if cc.Error != nil {
				v.Calls.Failed++
			} else {
				v.Calls.Completed++
			}
			if len(cc.Attempts) > 1 {
				v.Calls.Retried++
			}
		case journal.TypeRunResumed:
			v.Resumes++
		}
	}
	v.Calls.Waiting = len(waiting)
	v.Calls.InFlight = len(open) - len(waiting)
	return v
}

// Event is one journal record as `starflow history --json` and the API
// present it.
type Event struct {
	Seq      uint64             `json:"seq"`
	Time     time.Time          `json:"time"`
	Type     string             `json:"type"`
	Step     string             `json:"step,omitempty"`
	Builtin  string             `json:"builtin,omitempty"`
	Args     json.RawMessage    `json:"args,omitempty"`
	Key      string             `json:"key,omitempty"`
	Pos      string             `json:"pos,omitempty"`
	Result   json.RawMessage    `json:"result,omitempty"`
	Error    any                `json:"error,omitempty"`
	Attempts []journal.Attempt  `json:"attempts,omitempty"`
	Detail   json.RawMessage    `json:"detail,omitempty"`
	Duration *float64           `json:"duration_ms,omitempty"`
	Until    *time.Time         `json:"until,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	Status   journal.Status     `json:"status,omitempty"`
	Message  string             `json:"message,omitempty"`
	Level    string             `json:"level,omitempty"`
	Fields   json.RawMessage    `json:"fields,omitempty"`
	Input    json.RawMessage    `json:"input,omitempty"`
	Script   *journal.Manifest  `json:"script,omitempty"`
	Durab    journal.Durability `json:"durability,omitempty"`
	PID      int                `json:"pid,omitempty"`
	By       string             `json:"cancelled_by,omitempty"`
	Crashes  int                `json:"crashes,omitempty"`
	Retry    string             `json:"retried_by,omitempty"`
}

// Events converts a journal to events.
func Events(recs []journal.Record) ([]Event, error) {
	builtinOf := map[string]string{}
	out := make([]Event, 0, len(recs))
	for _, r := range recs {
		ev := Event{Seq: r.Seq, Time: r.Time, Type: r.Type.String()}
		var err error
		switch r.Type {
		case journal.TypeRunStarted:
			var p journal.RunStarted
			err = r.Decode(&p)
			ev.Input, ev.Script, ev.Durab = p.Input, &p.Script, p.Durability
		case journal.TypeCallStarted:
			var p journal.CallStarted
			err = r.Decode(&p)
			builtinOf[p.Step] = p.Builtin
			ev.Step, ev.Builtin, ev.Args, ev.Key, ev.Pos = p.Step, p.Builtin, p.Args, p.Key, p.Pos
		case journal.TypeCallWaiting:
			var p journal.CallWaiting
			err = r.Decode(&p)
			ev.Step, ev.Builtin, ev.Until, ev.Reason, ev.Detail = p.Step, builtinOf[p.Step], p.Until, p.Reason, p.Data
		case journal.TypeCallCompleted:
			var p journal.CallCompleted
			err = r.Decode(&p)
			ms := float64(p.Duration) / float64(time.Millisecond)
			ev.Step, ev.Builtin, ev.Result, ev.Attempts, ev.Detail, ev.Duration = p.Step, builtinOf[p.Step], p.Result, p.Attempts, p.Detail, &ms
			if p.Error != nil {
				ev.Error = p.Error
			}
		case journal.TypeLog:
			var p journal.Log
			err = r.Decode(&p)
			ev.Message, ev.Level, ev.Fields, ev.Pos = p.Message, p.Level, p.Fields, p.Pos
		case journal.TypeProgress:
			var p journal.Progress
			err = r.Decode(&p)
			ev.Result, ev.Pos = p.Value, p.Pos
		case journal.TypeRunResumed:
			var p journal.RunResumed
			err = r.Decode(&p)
			ev.PID = p.PID
		case journal.TypeRunQuarantined:
			var p journal.RunQuarantined
			err = r.Decode(&p)
			ev.Crashes, ev.Reason, ev.Step = p.Crashes, p.Reason, p.Step
		case journal.TypeRunRetried:
			var p journal.RunRetried
			err = r.Decode(&p)
			ev.Retry = p.By
		case journal.TypeRunFinished:
			var p journal.RunFinished
			err = r.Decode(&p)
			ev.Status, ev.Result, ev.By = p.Status, p.Result, p.CancelledBy
			if p.Error != nil {
				ev.Error = p.Error
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Question is what ask_human waits on, as shown to the person who answers.
type Question struct {
	Prompt   string          `json:"prompt"`
	Choices  []any           `json:"choices,omitempty"`
	Schema   json.RawMessage `json:"schema,omitempty"`
	Deadline *time.Time      `json:"deadline,omitempty"`
	Default  json.RawMessage `json:"default,omitempty"`
}

// QuestionOf returns the question a waiting run asks, or nil.
func QuestionOf(w *journal.Waiting) *Question {
	if w == nil || w.Builtin != "ask_human" || len(w.Data) == 0 {
		return nil
	}
	var q Question
	if json.Unmarshal(w.Data, &q) != nil || q.Prompt == "" {
		return nil
	}
	return &q
}
