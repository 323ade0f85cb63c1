// Package spec holds starflow's written semantics (the *.md files beside
// this one) and its conformance cases: testdata/*.star, run by go test.
//
// Each case is a workflow whose comment directives state what must happen:
//
//	# input: JSON          the run's input (default null)
//	# result: JSON         the expected result
//	# status: S            the expected final status (default completed)
//	# error: TEXT          a substring of the expected error
//	# journal: a b c       the builtins the journal records, in order
//	# max-steps: N         the run's step limit
//	# crash: varies        the result may differ after a crash (live values)
//
// The runner drives each case to its end (advancing a fake clock through
// sleeps), then checks three executions agree: the live run, a full replay
// of its journal (which must execute nothing), and a crash after every
// single journal record followed by a resume.
package spec
