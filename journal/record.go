package journal

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"time"
)

// Type identifies what a record says.
type Type uint8

// Record types. Their numbers are part of the on-disk format.
const (
	TypeRunStarted     Type = 1  // payload RunStarted; always Seq 1
	TypeCallStarted    Type = 2  // payload CallStarted
	TypeCallCompleted  Type = 3  // payload CallCompleted
	TypeCallWaiting    Type = 4  // payload CallWaiting
	TypeLog            Type = 5  // payload Log
	TypeRunResumed     Type = 6  // payload RunResumed
	TypeRunFinished    Type = 7  // payload RunFinished
	TypeProgress       Type = 8  // payload Progress
	TypeMessage        Type = 9  // payload Message; used in inboxes, not journals
	TypeRunMigrated    Type = 10 // payload RunMigrated
	TypeRunQuarantined Type = 11 // payload RunQuarantined
	TypeRunRetried     Type = 12 // payload RunRetried
)

var typeNames = map[Type]string{
	TypeRunStarted:     "run.started",
	TypeCallStarted:    "call.started",
	TypeCallCompleted:  "call.completed",
	TypeCallWaiting:    "call.waiting",
	TypeLog:            "log",
	TypeRunResumed:     "run.resumed",
	TypeRunFinished:    "run.finished",
	TypeProgress:       "progress",
	TypeMessage:        "message",
	TypeRunMigrated:    "run.migrated",
	TypeRunQuarantined: "run.quarantined",
	TypeRunRetried:     "run.retried",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Record is one entry of a run's journal.
type Record struct {
	Seq  uint64
	Type Type
	Time time.Time
	Data []byte // JSON payload, one of the payload types below
}

// NewRecord builds a record with a JSON-encoded payload.
func NewRecord(seq uint64, t Type, at time.Time, payload any) (Record, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return Record{}, fmt.Errorf("journal: encode %s payload: %w", t, err)
	}
	return Record{Seq: seq, Type: t, Time: at, Data: data}, nil
}

// Decode unmarshals the record's payload into v.
func (r Record) Decode(v any) error {
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("journal: record %d (%s): decode payload: %w", r.Seq, r.Type, err)
	}
	return nil
}

// Version is the current envelope encoding version.
const Version = 1

// headerSize is version(1) + type(1) + unix nanos(8) + crc32c(4).
const headerSize = 14

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode serialises r into its envelope:
//
//	byte 0      encoding version (1)
//	byte 1      record type
//	bytes 2-9   record time, Unix nanoseconds, big-endian
//	bytes 10-13 CRC-32C (Castagnoli) of bytes 0-9 followed by the payload
//	bytes 14-   JSON payload
//
// The sequence number is not in the envelope: it is the record's key.
func Encode(r Record) []byte {
	b := make([]byte, headerSize+len(r.Data))
	b[0] = Version
	b[1] = byte(r.Type)
	binary.BigEndian.PutUint64(b[2:10], uint64(r.Time.UnixNano()))
	copy(b[headerSize:], r.Data)
	crc := crc32.Update(crc32.Checksum(b[:10], castagnoli), castagnoli, b[headerSize:])
	binary.BigEndian.PutUint32(b[10:14], crc)
	return b
}

// DecodeRecord parses and verifies an envelope written by Encode. Any damage
// is reported as a *CorruptError naming the run and sequence number.
func DecodeRecord(runID string, seq uint64, b []byte) (Record, error) {
	t, at, payload, reason := openEnvelope(b)
	if reason == "" {
		if _, ok := typeNames[t]; !ok {
			reason = fmt.Sprintf("unknown record type %d", uint8(t))
		}
	}
	if reason != "" {
		return Record{}, &CorruptError{RunID: runID, Seq: seq, Reason: reason}
	}
	data := make([]byte, len(payload))
	copy(data, payload)
	return Record{Seq: seq, Type: t, Time: at, Data: data}, nil
}

// CheckHeader verifies what can be verified of an envelope from its first
// 14 bytes alone (version and type, not the checksum): it returns the
// record type, or a reason the header is invalid.
func CheckHeader(head []byte) (Type, string) {
	if len(head) < headerSize {
		return 0, fmt.Sprintf("record header is %d bytes, shorter than %d", len(head), headerSize)
	}
	if head[0] != Version {
		return 0, fmt.Sprintf("unknown encoding version %d (this starflow reads version %d)", head[0], Version)
	}
	t := Type(head[1])
	if _, ok := typeNames[t]; !ok {
		return 0, fmt.Sprintf("unknown record type %d", head[1])
	}
	return t, ""
}

// openEnvelope verifies an envelope's version and checksum and splits it;
// reason is empty if it is valid. The payload aliases b.
func openEnvelope(b []byte) (t Type, at time.Time, payload []byte, reason string) {
	if len(b) < headerSize {
		return 0, at, nil, fmt.Sprintf("record is %d bytes, shorter than its %d-byte header", len(b), headerSize)
	}
	if b[0] != Version {
		return 0, at, nil, fmt.Sprintf("unknown encoding version %d (this starflow reads version %d)", b[0], Version)
	}
	want := binary.BigEndian.Uint32(b[10:14])
	got := crc32.Update(crc32.Checksum(b[:10], castagnoli), castagnoli, b[headerSize:])
	if got != want {
		return 0, at, nil, fmt.Sprintf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return Type(b[1]), time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10]))).UTC(), b[headerSize:], ""
}

// metaType is the envelope type of run metadata. It is not a record type:
// DecodeRecord refuses it, and DecodeRun accepts nothing else.
const metaType Type = 254

// EncodeRun serialises a run's metadata in the record envelope (see
// Encode), with type byte 254 and the run's UpdatedAt as the time, so
// that metadata is versioned and checksummed like records.
func EncodeRun(r *Run) ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("journal: encode metadata of run %s: %w", r.ID, err)
	}
	return Encode(Record{Type: metaType, Time: r.UpdatedAt, Data: data}), nil
}

// DecodeRun parses and verifies metadata written by EncodeRun, or the
// plain JSON object of earlier versions (which starts with '{'). Damage is
// reported as a *CorruptError naming the run.
func DecodeRun(runID string, b []byte) (*Run, error) {
	corrupt := func(reason string) error {
		return &CorruptError{RunID: runID, Reason: "metadata: " + reason}
	}
	data := b
	if len(b) == 0 || b[0] != '{' {
		t, _, payload, reason := openEnvelope(b)
		if reason != "" {
			return nil, corrupt(reason)
		}
		if t != metaType {
			return nil, corrupt(fmt.Sprintf("envelope type %d, want %d", uint8(t), uint8(metaType)))
		}
		data = payload
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, corrupt("invalid JSON: " + err.Error())
	}
	if r.ID != runID {
		return nil, corrupt(fmt.Sprintf("it names run %q", r.ID))
	}
	return &r, nil
}

// RunStarted is the payload of the first record of every run.
type RunStarted struct {
	Script     Manifest        `json:"script"`
	Input      json.RawMessage `json:"input"`
	Durability Durability      `json:"durability"`
	Limits     Limits          `json:"limits"`
	Dialect    Dialect         `json:"dialect"`
	Origin     *Origin         `json:"origin,omitempty"` // set when the run is a fork
}

// Origin says which run a fork was made from.
type Origin struct {
	Run       string `json:"run"`                  // the run forked
	At        int    `json:"at"`                   // calls 1..At were reused
	SetResult bool   `json:"set_result,omitempty"` // call At's result was replaced
}

// RunMigrated moves a run to new code, after a replay check showed the
// new code reproduces the journal. Later executions use Script.
type RunMigrated struct {
	Script   Manifest `json:"script"`
	From     string   `json:"from"`     // hash of the manifest it replaces
	Replayed int      `json:"replayed"` // journaled calls the check reproduced
}

// Manifest pins a run's code: the entry file and every file it loads, by
// content hash (see Store.PutBlob).
type Manifest struct {
	Entry string            `json:"entry"`
	Files map[string]string `json:"files"` // module name -> blob hash
}

// Limits bound a run's execution. Zero means the runtime default.
type Limits struct {
	MaxSteps uint64 `json:"max_steps"`
	MaxCalls int    `json:"max_calls"`
}

// Dialect records the Starlark language options a run was started with.
type Dialect struct {
	While     bool `json:"while,omitempty"`
	Recursion bool `json:"recursion,omitempty"`
}

// CallStarted records a builtin call about to run for the first time.
type CallStarted struct {
	Step    string          `json:"step"`
	Builtin string          `json:"builtin"`
	Args    json.RawMessage `json:"args"`   // canonical, redacted arguments
	Digest  string          `json:"digest"` // sha256 of builtin name and Args
	Key     string          `json:"key"`    // idempotency key "<run-id>/<step>"
	Pos     string          `json:"pos"`    // file:line:col of the call
}

// CallCompleted records the outcome of a call: exactly one of Result and
// Error is set.
type CallCompleted struct {
	Step     string          `json:"step"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *CallError      `json:"error,omitempty"`
	Attempts []Attempt       `json:"attempts,omitempty"`
	Detail   json.RawMessage `json:"detail,omitempty"`
	Duration time.Duration   `json:"duration_ns"`
	Consumed []uint64        `json:"consumed,omitempty"` // inbox messages the call took
}

// CallError is a journaled builtin failure; replay raises it again.
type CallError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Attempt describes one try of a call that the runtime retried.
type Attempt struct {
	N        int             `json:"n"`
	Start    time.Time       `json:"start"`
	Duration time.Duration   `json:"duration_ns"`
	Error    string          `json:"error,omitempty"`
	Kind     string          `json:"kind,omitempty"`
	Wait     time.Duration   `json:"wait_ns,omitempty"` // backoff before the next attempt
	Detail   json.RawMessage `json:"detail,omitempty"`
}

// CallWaiting records that a call suspended the run.
type CallWaiting struct {
	Step   string          `json:"step"`
	Reason string          `json:"reason"`
	Until  *time.Time      `json:"until,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	// Retry is set when the call waits to try again after a failed
	// attempt (the runtime's backoff, or a wait the builtin asked for):
	// what the next attempt continues from.
	Retry *RetryWait `json:"retry,omitempty"`
}

// RetryWait is where a call that waits between attempts stands.
type RetryWait struct {
	Attempt  int             `json:"attempt"`         // the attempt that comes next
	State    json.RawMessage `json:"state,omitempty"` // what the builtin passed on (runtime.Retry.State)
	Attempts []Attempt       `json:"attempts"`        // the failed attempts so far
	Started  time.Time       `json:"started"`         // when the call's first attempt began
}

// Log is a message a script logged with log() or print().
type Log struct {
	Level   string          `json:"level"`
	Message string          `json:"msg"`
	Fields  json.RawMessage `json:"fields,omitempty"`
	Pos     string          `json:"pos,omitempty"`
}

// Progress is a value the script published with progress().
type Progress struct {
	Value json.RawMessage `json:"value"`
	Pos   string          `json:"pos,omitempty"`
}

// RunResumed marks a new execution of an existing run (after a crash, a
// suspension, or an explicit resume).
type RunResumed struct {
	PID  int    `json:"pid"`
	Host string `json:"host,omitempty"`
}

// RunQuarantined records that a run was set aside: the process died while
// executing it Crashes times in a row without a new call completing.
type RunQuarantined struct {
	Crashes int    `json:"crashes"`
	Reason  string `json:"reason"`
	Step    string `json:"step,omitempty"` // the last step journaled before the crashes
}

// RunRetried records that a quarantined run was released to run again.
type RunRetried struct {
	By string `json:"by,omitempty"`
}

// RunFinished is the last record of a run.
type RunFinished struct {
	Status      Status          `json:"status"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       *RunError       `json:"error,omitempty"`
	CancelledBy string          `json:"cancelled_by,omitempty"`
}

// RunError describes why a run failed, diverged or was cancelled.
type RunError struct {
	Kind      string `json:"kind"` // script, limit, divergence, cancelled, ...
	Message   string `json:"message"`
	Pos       string `json:"pos,omitempty"` // file:line:col where it happened
	Backtrace string `json:"backtrace,omitempty"`
}

func (e *RunError) Error() string {
	if e.Pos != "" {
		return e.Pos + ": " + e.Message
	}
	return e.Message
}
