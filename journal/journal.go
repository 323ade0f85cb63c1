package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// Store is the durable home of runs. Implementations must be safe for
// concurrent use by many goroutines.
type Store interface {
	// Create records a new run with its first records (at least the
	// TypeRunStarted record, with Seq 1). If a run with that ID exists it
	// returns an error wrapping ErrRunExists and writes nothing. Create is
	// durable when it returns.
	Create(ctx context.Context, run *Run, recs []Record) error

	// Append adds records to the end of a run's journal and, when run is not
	// nil, replaces the run's metadata in the same atomic write. recs[0].Seq
	// must be one more than the run's last sequence number (ErrConflict
	// otherwise). With durable set, Append returns only once the write is on
	// stable storage; without it, once the write survives a crash of this
	// process.
	Append(ctx context.Context, id string, recs []Record, run *Run, durable bool) error

	// Run returns a run's metadata, or an error wrapping ErrNotFound. A
	// run whose metadata is damaged, or whose journal does not begin with
	// a valid TypeRunStarted record, is reported as a *CorruptError.
	Run(ctx context.Context, id string) (*Run, error)

	// Records returns a run's records with Seq >= from, in order, each
	// verified against its checksum (a *CorruptError otherwise).
	Records(ctx context.Context, id string, from uint64) ([]Record, error)

	// List returns runs, newest first. A run that cannot be read (its
	// metadata, or the run.started record its journal must begin with,
	// is damaged) does not hide the others: List then returns every run it
	// could read together with a *CorruptRunsError naming each damaged one
	// (errors.Is(err, ErrCorrupt) holds). Damaged runs are reported
	// whatever the filter, and do not count towards its Limit. Any other
	// error comes with no runs.
	List(ctx context.Context, f Filter) ([]*Run, error)

	// PutBlob stores data under its content hash ("sha256:<hex>") and
	// returns the hash. Storing the same content twice is a no-op.
	PutBlob(ctx context.Context, data []byte) (string, error)

	// Blob returns the content stored under hash, or ErrNotFound.
	Blob(ctx context.Context, hash string) ([]byte, error)

	// Deliver durably appends a message to a run's inbox and returns its
	// sequence number (1, 2, ... per run). The run must exist. When run is
	// not nil, its Inbox field is set to the message's sequence number and
	// it replaces the run's metadata in the same atomic write, so that the
	// metadata always says how many messages were delivered.
	Deliver(ctx context.Context, id string, m Message, run *Run) (uint64, error)

	// Inbox returns a run's messages with Seq >= from, in order.
	Inbox(ctx context.Context, id string, from uint64) ([]Message, error)

	// Close flushes pending writes and releases the store.
	Close() error
}

// Filter selects runs for Store.List.
type Filter struct {
	Status []Status // any of these; empty means all
	Limit  int      // at most this many; 0 means no limit
}

// Match reports whether r passes the filter's status condition.
func (f Filter) Match(r *Run) bool {
	if len(f.Status) == 0 {
		return true
	}
	for _, s := range f.Status {
		if r.Status == s {
			return true
		}
	}
	return false
}

// Status is the state of a run.
type Status string

// The statuses of a run. Completed, failed, cancelled and diverged are final.
const (
	StatusRunning   Status = "running"   // executing, or interrupted and resumable
	StatusWaiting   Status = "waiting"   // suspended on a timer, a human or a signal
	StatusCompleted Status = "completed" // main returned; Result holds its value
	StatusFailed    Status = "failed"    // the script raised an error
	StatusCancelled Status = "cancelled" // stopped on request
	StatusDiverged  Status = "diverged"  // the script no longer matches its journal
	// StatusQuarantined is a run set aside because the process died while
	// executing it several times in a row without progress (a script that
	// exhausts memory, say). It is not executed again until someone asks
	// (starflow retry); it is not final.
	StatusQuarantined Status = "quarantined"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{StatusRunning, StatusWaiting, StatusCompleted, StatusFailed, StatusCancelled, StatusDiverged, StatusQuarantined}

// Final reports whether no further execution can change a run in status s.
func (s Status) Final() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusDiverged:
		return true
	}
	return false
}

// ParseStatus validates a status name.
func ParseStatus(s string) (Status, error) {
	for _, st := range Statuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown status %q (want one of running, waiting, completed, failed, cancelled, diverged, quarantined)", s)
}

// Durability says when a run's records reach stable storage.
type Durability string

// The durability modes. See spec/replay.md for the trade-offs.
const (
	// DurabilitySync makes each call's completion durable (fsynced) before
	// the script sees its result. Concurrent runs share fsyncs.
	DurabilitySync Durability = "sync"
	// DurabilityAsync writes each completion before the script sees it but
	// does not wait for fsync: it survives a crash of the process, and may
	// lose the last moments of work on power loss. Never corrupts.
	DurabilityAsync Durability = "async"
	// DurabilityExit records the start of the run, then keeps call records in
	// memory and writes them when the run ends or suspends. A crash loses
	// every call since the last suspension; they run again on resume.
	DurabilityExit Durability = "exit"
)

// ParseDurability validates a durability mode name; "" means sync.
func ParseDurability(s string) (Durability, error) {
	switch Durability(s) {
	case "":
		return DurabilitySync, nil
	case DurabilitySync, DurabilityAsync, DurabilityExit:
		return Durability(s), nil
	}
	return "", fmt.Errorf("unknown durability mode %q (want sync, async or exit)", s)
}

// Run is the metadata of one run, kept beside its journal so that listing
// and showing runs is cheap.
type Run struct {
	ID         string          `json:"id"`
	Status     Status          `json:"status"`
	Script     string          `json:"script"`      // entry file as given at start
	ScriptHash string          `json:"script_hash"` // hash of the pinned manifest
	Durability Durability      `json:"durability"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	Waiting    *Waiting        `json:"waiting,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *RunError       `json:"error,omitempty"`
	Progress   json.RawMessage `json:"progress,omitempty"` // last value the script published with progress()
	Origin     *Origin         `json:"origin,omitempty"`   // set when the run is a fork
	// Inbox is the sequence number of the last message delivered to the
	// run (see Store.Deliver); 0 if none.
	Inbox uint64 `json:"inbox,omitempty"`
	// Executing is set while a process executes the run: written when an
	// execution starts, cleared when it stops cleanly (finishes, suspends
	// or is interrupted). Found set when a new execution starts, it means
	// the process died while executing the run.
	Executing *Execution `json:"executing,omitempty"`
	// Crashes counts the executions in a row that ended with the process
	// dying and no new call completed (see StatusQuarantined).
	Crashes int `json:"crashes,omitempty"`
}

// Execution describes the process executing a run.
type Execution struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host,omitempty"`
	Since time.Time `json:"since"`
	Step  string    `json:"step,omitempty"` // the last step it journaled, if known
}

// Waiting describes what a waiting run waits for.
type Waiting struct {
	Step    string          `json:"step"`
	Builtin string          `json:"builtin"`
	Reason  string          `json:"reason"`
	Until   *time.Time      `json:"until,omitempty"` // wake-up time, if any
	Pos     string          `json:"pos,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	// Retry is set when the call waits to try again after a failed
	// attempt; messages do not end such a wait.
	Retry bool `json:"retry,omitempty"`
	// Inbox is the run's Inbox when the wait was committed: a later
	// message may end the wait, so a run whose Inbox is beyond it must
	// check again.
	Inbox uint64 `json:"inbox,omitempty"`
}

// Message is something sent to a run from outside: an answer to the
// question it asks, or a named signal. Messages wait in the run's inbox, in
// order, until a builtin consumes them; which call consumed which message
// is journaled with the call (CallCompleted.Consumed), so replay is exact.
type Message struct {
	Seq   uint64          `json:"seq"`
	Kind  string          `json:"kind"` // MessageAnswer or MessageSignal
	Name  string          `json:"name,omitempty"`
	Value json.RawMessage `json:"value"`
	From  string          `json:"from,omitempty"` // who sent it
	Time  time.Time       `json:"time"`
}

// Message kinds.
const (
	MessageAnswer = "answer"
	MessageSignal = "signal"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateID checks a run ID: 1 to 128 characters from [A-Za-z0-9._-],
// starting with a letter or digit. IDs appear in idempotency keys
// ("<run-id>/<step>"), so they never contain a slash.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid run id %q: use 1-128 characters from A-Z a-z 0-9 . _ - starting with a letter or digit", id)
	}
	return nil
}

// KV is optional scratch storage beside the journals, for state that is not
// part of any run's history and is never replayed: response caches, for
// example. A Store may implement it; keys are namespaced by the caller
// ("llm/cache/<digest>").
type KV interface {
	// GetKV returns the value under key; ok is false if it is absent or
	// expired.
	GetKV(ctx context.Context, key string) (val []byte, ok bool, err error)
	// PutKV stores val under key; a positive ttl makes it expire. PutKV is
	// not synced: a crash may lose recent puts.
	PutKV(ctx context.Context, key string, val []byte, ttl time.Duration) error
}
