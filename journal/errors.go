package journal

import (
	"errors"
	"fmt"
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

// CorruptError reports a record that failed verification.
type CorruptError struct {
	RunID  string
	Seq    uint64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal record %d of run %s is corrupt: %s; the run cannot be replayed safely (restore the store from a backup, or inspect it with starflow history %s)", e.Seq, e.RunID, e.Reason, e.RunID)
}

// Unwrap lets errors.Is(err, ErrCorrupt) match.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

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
