package journal

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors returned (wrapped) by Store implementations.
var (
	ErrNotFound  = errors.New("not found")
	ErrRunExists = errors.New("run already exists")
	ErrConflict  = errors.New("journal sequence conflict")
	ErrLocked    = errors.New("store is in use by another process")
	ErrClosed    = errors.New("store is closed")
	ErrCorrupt   = errors.New("journal record is corrupt")
	// ErrTooLarge is returned for a record, message or blob larger than
	// MaxRecordBytes.
	ErrTooLarge = errors.New("value too large for the journal")
	// ErrNoSpace is returned when the store refuses writes because the
	// disk is (nearly) full; runs stay resumable once space is freed.
	ErrNoSpace = errors.New("no space left for the journal")
)

// MaxRecordBytes is the largest record payload (and inbox message, and
// script blob) a store accepts. Builtins check their results against it
// before a call is journaled, so that an oversized value fails the call
// with a clear error instead of failing the write.
const MaxRecordBytes = 64 << 20

// CorruptError reports data that failed verification: a record (RunID and
// Seq set), a run's metadata or the start of its journal (RunID set, Seq
// 0), or the store itself (RunID empty; Store names its directory).
type CorruptError struct {
	RunID  string
	Seq    uint64
	Reason string
	Store  string // the store's directory, when known
}

func (e *CorruptError) Error() string {
	switch {
	case e.RunID != "" && e.Seq > 0:
		return fmt.Sprintf("journal record %d of run %s is corrupt: %s; the run cannot be replayed safely (restore the store from a backup, or inspect it with starflow history %s)", e.Seq, e.RunID, e.Reason, e.RunID)
	case e.RunID != "":
		return fmt.Sprintf("run %s is corrupt: %s; the run cannot be used safely (restore the store from a backup, or inspect it with starflow history %s)", e.RunID, e.Reason, e.RunID)
	case e.Store != "":
		return fmt.Sprintf("the store %s is corrupt: %s", e.Store, e.Reason)
	}
	return "the store is corrupt: " + e.Reason
}

// Unwrap lets errors.Is(err, ErrCorrupt) match.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// CorruptRunsError is returned by Store.List, together with the runs it
// could read, when some runs could not be read: each is named by its
// *CorruptError.
type CorruptRunsError struct {
	Runs []*CorruptError
}

func (e *CorruptRunsError) Error() string {
	if len(e.Runs) == 1 {
		return e.Runs[0].Error() + "; the other runs are listed"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d runs are corrupt and not listed:", len(e.Runs))
	for i, c := range e.Runs {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Runs)-i)
			break
		}
		if i > 0 {
			b.WriteString(";")
		}
		if c.Seq > 0 {
			fmt.Fprintf(&b, " %s (record %d: %s)", c.RunID, c.Seq, c.Reason)
		} else {
			fmt.Fprintf(&b, " %s (%s)", c.RunID, c.Reason)
		}
	}
	b.WriteString("; restore the store from a backup, or inspect them with starflow history ID")
	return b.String()
}

// Unwrap lets errors.Is(err, ErrCorrupt) and errors.As(err, **CorruptError)
// match.
func (e *CorruptRunsError) Unwrap() []error {
	out := make([]error, len(e.Runs))
	for i, c := range e.Runs {
		out[i] = c
	}
	return out
}

// LockedError reports that another process owns the store, with what is
// known about that process.
type LockedError struct {
	Dir     string
	PID     int       // 0 if unknown
	Command string    // command line of the owner, if known
	Since   time.Time // when the owner opened the store, if known
	Addr    string    // API address the owner serves, if any
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("the store %s is in use by another process; wait for it to finish or stop it, then try again", e.Dir)
	}
	msg := fmt.Sprintf("the store %s is in use by process %d", e.Dir, e.PID)
	if e.Command != "" {
		msg += fmt.Sprintf(" (%s", e.Command)
		if !e.Since.IsZero() {
			msg += ", since " + e.Since.Local().Format("15:04:05")
		}
		msg += ")"
	}
	if e.Addr != "" {
		return msg + fmt.Sprintf("; it serves the API at %s", e.Addr)
	}
	return msg + fmt.Sprintf("; wait for it to finish, or stop it (kill %d): interrupted runs continue with `starflow resume ID`", e.PID)
}

// Unwrap lets errors.Is(err, ErrLocked) match.
func (e *LockedError) Unwrap() error { return ErrLocked }
