// Package journal owns starflow's durable record of every run: the Store
// interface, the record envelope (type, encoding version, checksum), the
// typed payloads the runtime writes, and run metadata.
//
// # Basics
//
// A run is an append-only sequence of records numbered from 1. The first
// record is always [TypeRunStarted]; it pins the script (by content hash) and
// the input. Every builtin call the script makes appears as a
// [TypeCallStarted] record followed, once the call finishes, by a
// [TypeCallCompleted] record; a call that suspends the run (a long sleep, a
// question for a human) has a [TypeCallWaiting] record in between. A run ends
// with [TypeRunFinished].
//
// Next to the records, a store keeps one [Run] per run: its status and
// timestamps, so that listing runs never reads their journals, and a
// content-addressed blob space for script sources.
//
// Each record is stored in an envelope (see [Encode]): a version byte, a type
// byte, the record time, a CRC-32C checksum and a JSON payload.
// [DecodeRecord] verifies the checksum; a mismatch is reported as a
// [*CorruptError] that names the run and the sequence number, never as a
// silently wrong value. Run metadata is stored in the same envelope
// ([EncodeRun], [DecodeRun]).
//
// Damage is reported, never read as something else: a [*CorruptError] names
// the record, the run (its metadata, or a journal that does not start with
// run.started), or the store. [Store.List] returns the runs it can read
// with a [*CorruptRunsError] naming the others. Values are limited to
// [MaxRecordBytes] ([ErrTooLarge]), and a store may refuse writes when its
// disk is nearly full ([ErrNoSpace]).
//
// # Implementations
//
// Package journal/badgerstore is the embedded default, built on Badger v4,
// with group commit so that many concurrent runs share one fsync. Package
// journal/storetest holds the behavioural tests any Store must pass, so a
// second backend can prove itself against the same suite.
//
// # Caveats
//
// The store checks that each run's sequence numbers are contiguous and never
// rewritten, but it does not arbitrate between two processes: the embedded
// backend takes a directory lock, and other backends must provide their own
// ownership (see [ErrLocked]).
//
// The on-disk format is documented in spec/journal.md.
package journal
