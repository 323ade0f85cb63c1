// Package runtime owns starflow's execution model: it runs Starlark
// workflows, journals every builtin call through one call boundary, and
// replays journals after crashes, suspensions and restarts.
//
// # Basics
//
// A workflow is a script that defines main(input). Runtime.Start pins the
// script (and every file it loads) in the journal and calls main. Each call
// of a journaled builtin (see Builtin) crosses the call boundary, which
//
//   - gives the call a step ("1", "2", ... in order; "S.B.n" inside branch B
//     of step S) and the idempotency key "<run-id>/<step>";
//   - on replay, when the journal holds the call's outcome, checks that the
//     builtin and its arguments are the ones recorded and returns the
//     recorded value (or raises the recorded error) without running it;
//   - otherwise runs the builtin live, with its retry policy, journals the
//     outcome as the run's durability mode asks, and returns the value
//     decoded from the journal, so live and replayed executions see
//     identical data.
//
// A builtin can make the run wait (Suspend): a short wait happens in
// process; a long one ends the execution with status waiting, holding no
// goroutine and no interpreter. Runtime.Resume continues a run by replaying
// it from the start; crash recovery is the same path.
//
// Builtins never wait themselves: one that wants another attempt returns
// Retry with the wait, and the runtime waits on its clock (Options.Clock,
// Options.Sleep) or suspends the run.
//
// # Structure
//
// Three parts make an execution, each testable on its own:
//
//   - the journal cursor (cursor.go): replay, match-or-diverge, numbering
//     records, and the one write policy (which record reaches the store
//     when, and how durably, per durability mode);
//   - the lifecycle (lifecycle.go): a run's status, current wait, cancel
//     request and inbox position, and the only writer of its metadata;
//     starting, waiting, suspending, finishing, Send, Cancel and Retry are
//     transitions on it under one lock, so a message sent as the run is
//     about to wait is never lost and a cancel never races a completion;
//   - the guard (guard.go): the run's step, memory and compute limits.
//
// exec.go ties them to the Starlark interpreter at the call boundary.
//
// # Guarantees
//
// A completed call never runs again. A call in flight when the process
// died runs again with the same idempotency key: execution is at least
// once, and exactly once for effects that honour the key. A script that no
// longer matches its journal (a changed argument, an inserted, removed or
// reordered call) stops in status diverged with both positions in the
// error; it is never silently re-executed. spec/replay.md is the full
// statement.
//
// # Caveats
//
// Builtins must not hold state that changes their results on replay: the
// runtime only journals what crosses the call boundary. Globals (Options)
// must be deterministic. A Runtime executes a run on the caller's goroutine;
// one process should own a store at a time (the Badger store enforces it).
package runtime
