package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
)

// Builtin describes a journaled builtin: a function scripts call whose
// result is recorded once and replayed ever after. The runtime owns the
// journal; Fn only does the work.
type Builtin struct {
	// Name is how scripts call it. A dotted name ("http.get") puts the
	// function in a module ("http") that scripts use as http.get(...).
	Name string

	// Doc is a one-line description, shown by `starflow builtins`.
	Doc string

	// Fn performs the call. It runs only live: never when the journal
	// already holds the call's outcome. It may run more than once for one
	// call (retries; re-execution after a crash), always with the same
	// Call.Key, so side effects must be idempotent under that key.
	//
	// Fn returns the result (any value the journal can hold; see
	// internal/value), or an error. Return an *Error to classify a failure,
	// or a *Suspend to make the run wait.
	Fn func(ctx context.Context, call *Call) (starlark.Value, error)

	// Retry, if set, retries failed calls that are transient (see Error).
	// Nil means one attempt.
	Retry *RetryPolicy

	// Redact, if set, returns the arguments as they should be written to
	// the journal and logs, for example with credentials removed. Secret
	// values (see Secret) are always journaled by name only and need no
	// redaction. Redact must not modify its inputs.
	Redact func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple)

	// Effect declares that Fn acts on the world outside the run (http and
	// llm do; a host function that charges a card should): its
	// call.started record is written before Fn runs, so that after a crash
	// during the call the journal says the call was in flight (it runs
	// again, with the same key). Other builtins (now, uuid, random, sleep,
	// ask_human, wait_signal) have it written with their outcome, which
	// saves a write per call. See spec/replay.md.
	Effect bool

	// Accept, if set, is consulted when a message (an answer, a signal) is
	// sent to a run that waits in this builtin. It returns an error to
	// refuse the message (it is then not stored, and the sender is told
	// why), and whether the message lets the wait end (so the run should
	// be resumed now). Without Accept, answers are refused and signals are
	// stored without waking the run.
	Accept func(wait *journal.Waiting, m *journal.Message) (wake bool, err error)
}

// Func makes a Builtin from a Go function that works on plain Go values:
// the result goes through value.FromGo (maps, slices, numbers, strings,
// structs with json tags). Use Call.GoArgs to read the arguments as Go
// values.
func Func(name string, fn func(ctx context.Context, call *Call) (any, error)) *Builtin {
	return &Builtin{
		Name: name,
		Fn: func(ctx context.Context, call *Call) (starlark.Value, error) {
			x, err := fn(ctx, call)
			if err != nil {
				return nil, err
			}
			v, err := value.FromGo(x)
			if err != nil {
				return nil, Permanent("result", err)
			}
			return v, nil
		},
	}
}

// Secret is a reference to a secret by name; see Call.Secret.
type Secret = value.Secret

// Call is one invocation of a builtin, as Fn sees it.
type Call struct {
	RunID   string
	Step    string // position in the run: "3", or "5.1.2" inside a branch
	Key     string // idempotency key: "<run-id>/<step>", stable across retries and crashes
	Builtin string
	Pos     string // file:line:col of the call in the script
	Args    starlark.Tuple
	Kwargs  []starlark.Tuple
	// Attempt numbers the tries of this call: 1 for the first. It keeps
	// counting across waits between attempts, also when the run suspended
	// in between; it starts again at 1 when a crash made the call run
	// again.
	Attempt int
	// Started is when the call's first attempt began, on the runtime's
	// clock; it stays the same across waits between attempts. Measure a
	// call's deadline from it, and read the clock with Now.
	Started time.Time

	// Wait is set when the call suspended the run earlier; it holds what
	// the call recorded then (for example sleep's wake-up time).
	Wait *journal.CallWaiting

	// Log is the run's logger, with run and step fields set.
	Log zerolog.Logger

	rt       *Runtime
	run      *run
	detail   json.RawMessage
	consumed []uint64
	state    json.RawMessage // from the previous attempt's Retry.State
}

// State decodes into v what the previous attempt of this call passed on
// in Retry.State. It reports false on a first attempt (or when the
// previous attempt passed nothing).
func (c *Call) State(v any) (bool, error) {
	if len(c.state) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(c.state, v); err != nil {
		return false, fmt.Errorf("%s: decode the state of attempt %d: %w", c.Builtin, c.Attempt-1, err)
	}
	return true, nil
}

// Messages returns the messages of a kind (journal.MessageAnswer,
// journal.MessageSignal) sent to the run and not yet consumed by a
// completed call, oldest first; name, if not empty, selects signals by
// name.
func (c *Call) Messages(ctx context.Context, kind, name string) ([]journal.Message, error) {
	all, err := c.rt.store.Inbox(ctx, c.RunID, 1)
	if err != nil {
		return nil, err
	}
	var out []journal.Message
	for _, m := range all {
		if m.Kind != kind || (name != "" && m.Name != name) || c.run.cur.consumed[m.Seq] || slices.Contains(c.consumed, m.Seq) {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// Consume marks a message as taken by this call. The consumption is
// journaled with the call's completion, so a replay knows the message is
// gone; if the call does not complete (a crash), the message is offered
// again.
func (c *Call) Consume(m journal.Message) {
	if !slices.Contains(c.consumed, m.Seq) {
		c.consumed = append(c.consumed, m.Seq)
	}
}

// RunValue returns a run-scoped setting stored with SetRunValue, or nil.
func (c *Call) RunValue(key string) any {
	if c.run == nil {
		return nil
	}
	return c.run.values[key]
}

// Now returns the runtime clock's current time.
func (c *Call) Now() time.Time { return c.rt.now() }

// Unpack unpacks the call's arguments as starlark.UnpackArgs does.
func (c *Call) Unpack(pairs ...any) error {
	if err := starlark.UnpackArgs(c.Builtin, c.Args, c.Kwargs, pairs...); err != nil {
		return Permanent("invalid_argument", err)
	}
	return nil
}

// GoArgs returns the arguments as Go values (see value.ToGo).
func (c *Call) GoArgs() ([]any, map[string]any, error) {
	args := make([]any, len(c.Args))
	for i, a := range c.Args {
		g, err := value.ToGo(a)
		if err != nil {
			return nil, nil, Permanent("invalid_argument", fmt.Errorf("%s: argument %d: %w", c.Builtin, i+1, err))
		}
		args[i] = g
	}
	kw := make(map[string]any, len(c.Kwargs))
	for _, p := range c.Kwargs {
		g, err := value.ToGo(p[1])
		if err != nil {
			return nil, nil, Permanent("invalid_argument", fmt.Errorf("%s: argument %s: %w", c.Builtin, p[0], err))
		}
		kw[string(p[0].(starlark.String))] = g
	}
	return args, kw, nil
}

// Secret resolves a secret reference to its value at the moment of use.
// The value must never be returned in a result, logged or put in an error.
// If Options.CheckSecret refuses the name, Secret fails without resolving
// it.
func (c *Call) Secret(s Secret) (string, error) {
	if check := c.rt.opts.CheckSecret; check != nil {
		if err := check(s.Name); err != nil {
			return "", Permanent("secret", fmt.Errorf("secret %s: %w", s.Name, err))
		}
	}
	v, err := c.rt.opts.Secrets(s.Name)
	if err != nil {
		return "", Permanent("secret", fmt.Errorf("secret %s: %w", s.Name, err))
	}
	return v, nil
}

// SetDetail attaches information to the call's journal record (for
// example, per-attempt HTTP statuses), shown by `starflow history`. It
// must be JSON-encodable and free of secrets.
func (c *Call) SetDetail(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.detail = b
	return nil
}

// EnvSecrets resolves secrets from environment variables; it is the
// default Options.Secrets.
func EnvSecrets(name string) (string, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return "", fmt.Errorf("environment variable %s is not set", name)
	}
	return v, nil
}

// Error is a classified builtin failure. Builtins return it to say whether
// a failure is worth retrying; the runtime journals Kind and Message.
type Error struct {
	Kind       string        // short class: "timeout", "http_status", "rate_limit", "invalid_argument", ...
	Message    string        // what went wrong; never contains secrets
	Retryable  bool          // transient: trying again may succeed
	RetryAfter time.Duration // the wait the other side asked for, if any
	Err        error         // underlying cause, if any (not journaled)
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Transient returns a retryable error of the given kind.
func Transient(kind string, err error) *Error {
	return &Error{Kind: kind, Message: err.Error(), Retryable: true, Err: err}
}

// Permanent returns an error that is never retried.
func Permanent(kind string, err error) *Error {
	var e *Error
	if errors.As(err, &e) && !e.Retryable && e.Kind == kind {
		return e
	}
	return &Error{Kind: kind, Message: err.Error(), Err: err}
}

// classify turns any error from Fn into an *Error. Unclassified errors are
// retryable (as Temporal treats activity errors) when a policy allows it.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: "timeout", Message: err.Error(), Retryable: true, Err: err}
	}
	return &Error{Kind: "error", Message: err.Error(), Retryable: true, Err: err}
}

// Retry is returned by a builtin's Fn when an attempt failed and the
// builtin, having applied its own policy (attempts, deadlines, budgets),
// wants another attempt after a wait. The builtin never waits itself: the
// runtime waits After in process when it is short (see
// Options.MaxInlineWait), or suspends the run until then, and then calls
// Fn again with Call.Attempt one higher and Call.State returning State.
// Either way the wait is on the runtime's clock, so Drain, Cancel,
// SkipWaits and tests see it.
type Retry struct {
	Err   *Error        // this attempt's failure, journaled with the call's attempts
	After time.Duration // how long to wait before the next attempt
	State any           // JSON-encodable (no secrets): what the next attempt needs to continue
}

func (r *Retry) Error() string {
	if r.Err == nil {
		return fmt.Sprintf("retry after %s", r.After)
	}
	return fmt.Sprintf("%s (retrying after %s)", r.Err.Message, r.After)
}

// Unwrap returns the attempt's failure.
func (r *Retry) Unwrap() error {
	if r.Err == nil {
		return nil
	}
	return r.Err
}

// Suspend is returned by a builtin's Fn to make the run wait. The runtime
// journals it and either waits in-process (when Until is near) or
// suspends the run, releasing its goroutine and interpreter. When the run
// continues, Fn is called again for the same call with Call.Wait holding
// what was recorded, and decides whether the wait is over.
type Suspend struct {
	Reason string    // human-readable: "sleep until 15:04", "question: approve?"
	Until  time.Time // when to call Fn again; zero waits for an outside event only
	Data   any       // JSON-encodable state to keep with the wait (no secrets)
}

func (s *Suspend) Error() string { return "waiting: " + s.Reason }

// CallError is the error a script sees when a journaled call failed, live or
// replayed. attempt() exposes Kind.
type CallError struct {
	Builtin string
	Kind    string
	Message string
}

func (e *CallError) Error() string {
	if strings.HasPrefix(e.Message, e.Builtin+":") {
		return e.Message
	}
	return e.Builtin + ": " + e.Message
}
