// Package http owns starflow's http builtin: the journaled calls
// http.get, http.post, http.put, http.patch, http.delete and http.request,
// and the deterministic helpers http.defaults, http.bearer, http.basic and
// http.auth.
//
// A call is one journaled step. Inside it, transient failures (connection
// errors, timeouts, 408, 429, 500, 502, 503, 504) are retried under the
// project's runtime.RetryPolicy: exponential backoff with jitter,
// Retry-After and retry-after-ms honoured within the call's deadline, and a
// per-host retry budget (a token bucket, as in the AWS SDK) so that a
// failing host cannot cause a retry storm. The builtin never waits: each
// invocation of its Fn makes one attempt and, when another is due, returns
// a runtime.Retry with the wait; the runtime waits on its own clock, in
// process or by suspending the run, so Drain, SkipWaits and tests see every
// wait. go-retryablehttp makes each attempt's request, with its retry loop
// off. Every request but GET and HEAD carries Idempotency-Key:
// <run-id>/<step>, the same on every retry and on re-execution after a
// crash.
//
// Secrets (secret("NAME")) may be used in headers, params, form and JSON
// bodies and auth; they are resolved at the moment of the request and never
// reach the journal, logs or errors. Credentials given as plain strings in
// sensitive places (Authorization, Cookie, X-Api-Key, params named like
// keys or tokens, ...) are redacted from the journaled arguments.
//
// Guards: a maximum response size, an optional host allow-list, and a
// refusal to connect to link-local and cloud metadata addresses, checked
// on the resolved IP at dial time.
//
// The semantics scripts rely on are written in spec/http.md.
package http

import (
	"context"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"runtime"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/journal"
	sfrt "github.com/starflow/starflow/runtime"
)

// Defaults for Options.
const (
	DefaultMaxResponseBytes = 10 << 20 // 10 MiB
	DefaultTimeout          = 30 * time.Second
	DefaultMaxRetryAfter    = time.Minute
)

// Options configure a Module. The zero value is a good default.
type Options struct {
	// AllowHosts, if not empty, lists the hosts scripts may call:
	// "api.example.com" (exact), "*.example.com" (any subdomain) or
	// "127.0.0.1:8080" (host and port). It is checked on every redirect too.
	AllowHosts []string

	// AllowLinkLocal permits connections to link-local and cloud metadata
	// addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254,
	// 100.100.100.200). They are refused by default, checked on the
	// resolved IP when connecting, so a DNS name cannot bypass the check.
	// Loopback and private addresses are always allowed.
	AllowLinkLocal bool

	// MaxResponseBytes bounds a response body (default 10 MiB). A larger
	// body fails the call (kind response_too_large); it is never truncated.
	// It may not be more than a journal record holds
	// (journal.MaxRecordBytes, less what the call's record needs besides
	// the response); a response whose journal form is larger anyway (a
	// body that JSON-escapes to more bytes) fails the call with kind
	// too_large_for_journal.
	MaxResponseBytes int64

	// Timeout bounds one attempt, from connecting to reading the whole
	// body (default 30s). Scripts override it with timeout=.
	Timeout time.Duration

	// MaxRetryAfter is the longest server-requested wait (Retry-After,
	// retry-after-ms) honoured when a call has no deadline (default 1
	// minute). A longer request fails the call at once (kind deadline). A
	// call with a deadline honours any wait that ends before it. Waits
	// longer than the runtime's MaxInlineWait suspend the run.
	MaxRetryAfter time.Duration

	// Retry is the default retry policy; zero fields take the project
	// defaults (4 attempts, 1s initial, coefficient 2, 30s cap, ±20%
	// jitter). Scripts override it per call (retry=) or per run
	// (http.defaults(retry=...)).
	Retry sfrt.RetryPolicy

	// Budget configures the per-host retry budget.
	Budget Budget

	// Transport, if set, is cloned and used for requests (TLS settings,
	// proxies, connection pooling). The link-local guard is added to its
	// dialer either way. Default: a pooled transport like
	// http.DefaultTransport.
	Transport *nethttp.Transport

	// WrapTransport, if set, is called once by New with the transport
	// requests go through (the link-local guard stays in its dialer) and
	// returns the RoundTripper to use instead: fault injection (package
	// chaos) wraps it this way. Retries, budgets and the other guards stay
	// above it.
	WrapTransport func(nethttp.RoundTripper) nethttp.RoundTripper

	// Resolver, if set, resolves host names for the default dialer.
	Resolver *net.Resolver
}

// Module is a configured http builtin. It is safe for concurrent use; its
// retry budgets live as long as it does.
type Module struct {
	opts      Options
	allow     []hostPattern
	transport nethttp.RoundTripper
	budget    *budgets
}

// New returns a Module configured by opts.
func New(opts Options) (*Module, error) {
	if opts.MaxResponseBytes == 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("http: MaxResponseBytes %d is negative", opts.MaxResponseBytes)
	}
	if opts.MaxResponseBytes > maxJournaled {
		return nil, fmt.Errorf("http: MaxResponseBytes %d is more than a journal record can hold (journal.MaxRecordBytes is %d bytes, some of them for the call's other fields): such a response could never be recorded", opts.MaxResponseBytes, journal.MaxRecordBytes)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("http: Timeout %s is negative", opts.Timeout)
	}
	if opts.MaxRetryAfter == 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.MaxRetryAfter < 0 {
		return nil, fmt.Errorf("http: MaxRetryAfter %s is negative", opts.MaxRetryAfter)
	}
	if err := opts.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	budget, err := opts.Budget.withDefaults()
	if err != nil {
		return nil, err
	}
	allow, err := parseAllowHosts(opts.AllowHosts)
	if err != nil {
		return nil, err
	}
	m := &Module{opts: opts, allow: allow, budget: newBudgets(budget)}
	var rt nethttp.RoundTripper = m.newTransport(opts.Transport)
	if opts.WrapTransport != nil {
		if w := opts.WrapTransport(rt); w != nil {
			rt = w
		}
	}
	m.transport = rt
	return m, nil
}

func (m *Module) newTransport(base *nethttp.Transport) *nethttp.Transport {
	var t *nethttp.Transport
	if base != nil {
		t = base.Clone()
	} else {
		t = &nethttp.Transport{
			Proxy:                 nethttp.ProxyFromEnvironment,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   runtime.GOMAXPROCS(0) + 1,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	if t.DialContext != nil {
		// A dialer we do not control: check where it connected.
		t.DialContext = m.checkedDial(t.DialContext)
	} else {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: m.opts.Resolver}
		if !m.opts.AllowLinkLocal {
			d.Control = m.dialControl
		}
		t.DialContext = d.DialContext
	}
	if t.DialTLSContext != nil {
		t.DialTLSContext = m.checkedDial(t.DialTLSContext)
	}
	return t
}

// verbs are the journaled builtins; an empty method means http.request.
var verbs = []struct{ name, method string }{
	{"get", nethttp.MethodGet},
	{"post", nethttp.MethodPost},
	{"put", nethttp.MethodPut},
	{"patch", nethttp.MethodPatch},
	{"delete", nethttp.MethodDelete},
	{"request", ""},
}

const kwargsDoc = "params=, headers=, json= | body=, auth=, timeout=, deadline=, retry=, raise_for_status=True"

// Builtins returns the journaled builtins http.get, http.post, http.put,
// http.patch, http.delete and http.request. They apply their own retry
// policy (Builtin.Retry is nil) and ask the runtime for the waits.
func (m *Module) Builtins() []*sfrt.Builtin {
	out := make([]*sfrt.Builtin, 0, len(verbs))
	for _, v := range verbs {
		b := &sfrt.Builtin{Name: "http." + v.name, Effect: true}
		var redact func(starlark.Tuple, []starlark.Tuple) (starlark.Tuple, []starlark.Tuple)
		if v.method == "" {
			b.Doc = "http.request(method, url, " + kwargsDoc + ") -> response"
			redact = redactArgs(1)
		} else {
			b.Doc = "http." + v.name + "(url, " + kwargsDoc + ") -> response"
			redact = redactArgs(0)
		}
		b.Fn = m.fn(v.method, redact)
		b.Redact = journaledArgs(redact)
		out = append(out, b)
	}
	return out
}

// journaledArgs returns the Builtin.Redact function: the redacted
// arguments, with those too large for a journal record summarized (the
// call then fails without sending anything; see Module.fn).
func journaledArgs(redact func(starlark.Tuple, []starlark.Tuple) (starlark.Tuple, []starlark.Tuple)) func(starlark.Tuple, []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
	return func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
		args, kwargs = redact(args, kwargs)
		if argsJournalSize(args, kwargs) > 0 {
			args, kwargs = summarizeArgs(args, kwargs)
		}
		return args, kwargs
	}
}

// Globals returns the module value "http" holding the deterministic
// helpers http.defaults, http.bearer, http.basic and http.auth. The runtime
// adds the journaled builtins (http.get, ...) to it.
func (m *Module) Globals() starlark.StringDict {
	return starlark.StringDict{
		"http": &starlarkstruct.Module{Name: "http", Members: starlark.StringDict{
			"defaults": starlark.NewBuiltin("http.defaults", defaultsFn),
			"bearer":   starlark.NewBuiltin("http.bearer", bearerFn),
			"basic":    starlark.NewBuiltin("http.basic", basicFn),
			"auth":     starlark.NewBuiltin("http.auth", authFn),
		}},
	}
}

func (m *Module) fn(method string, redact func(starlark.Tuple, []starlark.Tuple) (starlark.Tuple, []starlark.Tuple)) func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
	return func(ctx context.Context, c *sfrt.Call) (starlark.Value, error) {
		p, err := m.prepare(c, method)
		if err != nil {
			var e *sfrt.Error
			if errors.As(err, &e) {
				return nil, err
			}
			return nil, sfrt.Permanent("invalid_argument", err)
		}
		// Arguments too large for the journal: the call could not be
		// recorded, so nothing is sent.
		if size := argsJournalSize(redact(c.Args, c.Kwargs)); size > 0 {
			f := tooLargeToSend(size)
			f.Message = fmt.Sprintf("%s %s: %s", p.method, p.display, f.Message)
			return nil, f
		}
		return m.do(ctx, c, p)
	}
}
