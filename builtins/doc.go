// Package builtins implements starflow's standard builtins: the journaled
// now, uuid, random and sleep (Standard), and the deterministic helpers
// log and attempt (Globals).
//
// Builtins only do work. The journal, replay and idempotency keys belong to
// package runtime: every function here that touches the outside world is a
// runtime.Builtin whose result the runtime records once and replays after.
// Subpackages hold the builtins that need configuration (http, llm).
//
// The semantics scripts can rely on are written in spec/builtins.md.
package builtins
