package main

import (
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// Exit codes (spec/cli.md).
const (
	ExitOK          = 0   // the run completed (or the command succeeded)
	ExitFailed      = 1   // the run failed: the script raised an error
	ExitUsage       = 2   // bad usage or bad input: flags, script syntax, input JSON, unknown run
	ExitWaiting     = 3   // the run is waiting on a timer, a human or a signal
	ExitCancelled   = 4   // the run was cancelled
	ExitDiverged    = 5   // the script no longer matches the run's journal
	ExitStore       = 6   // the store is unavailable: locked by another process, corrupt, or I/O failed
	ExitLimit       = 7   // the run was stopped by a limit: steps, builtin calls, memory, or compute time
	ExitQuarantined = 8   // the run is quarantined: the process died repeatedly while executing it
	ExitInterrupted = 130 // SIGINT/SIGTERM stopped the command; the run is resumable
)

// exitForOutcome is the exit code for where a run stands.
func exitForOutcome(out *runtime.Outcome) int {
	if out.Status == journal.StatusFailed && out.Error != nil && out.Error.Kind == "limit" {
		return ExitLimit
	}
	return exitForStatus(out.Status)
}

func exitForStatus(s journal.Status) int {
	switch s {
	case journal.StatusQuarantined:
		return ExitQuarantined
	case journal.StatusCompleted:
		return ExitOK
	case journal.StatusFailed:
		return ExitFailed
	case journal.StatusWaiting:
		return ExitWaiting
	case journal.StatusCancelled:
		return ExitCancelled
	case journal.StatusDiverged:
		return ExitDiverged
	}
	return ExitInterrupted
}
