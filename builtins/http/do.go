package http

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	nethttp "net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/internal/retryafter"
	"github.com/starflow/starflow/internal/value"
	sfrt "github.com/starflow/starflow/runtime"
)

// attemptInfo is one attempt, as kept in the call's journal detail.
type attemptInfo struct {
	N            int    `json:"n"`
	Status       int    `json:"status,omitempty"`
	Kind         string `json:"kind,omitempty"`
	Error        string `json:"error,omitempty"`
	DurationMs   int64  `json:"duration_ms"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"` // the wait the server asked for
	WaitMs       int64  `json:"wait_ms,omitempty"`        // the wait before the next attempt
}

// callDetail is what Call.SetDetail records for `starflow history`.
type callDetail struct {
	Method         string        `json:"method"`
	URL            string        `json:"url"`
	IdempotencyKey string        `json:"idempotency_key,omitempty"`
	Status         int           `json:"status,omitempty"`
	Attempts       []attemptInfo `json:"attempts"`
	Stopped        string        `json:"stopped,omitempty"` // why retrying stopped early: retry_budget, deadline
}

// retryState is what an attempt passes on to the next one
// (runtime.Retry.State). The runtime journals it with the wait when the
// run suspends, so it holds nothing secret: the attempts' errors are
// scrubbed.
type retryState struct {
	Attempts []attemptInfo `json:"attempts"`        // the attempts so far
	Spent    int           `json:"spent,omitempty"` // tokens the latest retry took from the host's budget
}

// exchange is one attempt of a call, and the decision that follows it.
type exchange struct {
	m    *Module
	c    *sfrt.Call
	p    *prepared
	host string

	prior      []attemptInfo // the call's earlier attempts
	spent      int           // tokens the retry that led to this attempt took
	a          attemptInfo   // this attempt
	t0         time.Time     // when this attempt began (real time: it measures the network)
	deadlineAt time.Time     // the call's deadline on the runtime's clock; zero: none
	actx       context.Context
	stop       *sfrt.Error // why retrying stopped early (budget, deadline)
}

const (
	kindStatus     = "http_status"
	kindTimeout    = "timeout"
	kindConnection = "connection"
	kindDeadline   = "deadline"
	kindBudget     = "retry_budget"
	kindTooLarge   = "response_too_large"
	kindTLS        = "tls"
	kindRedirect   = "redirect"
)

// errCallDeadline ends an attempt's context when the call's deadline
// comes during it.
var errCallDeadline = errors.New("the call's deadline passed")

// do makes one attempt of the call. When the attempt fails and the policy
// allows another, it returns a *runtime.Retry saying how long to wait:
// the runtime waits (in process, or by suspending the run) and calls Fn
// again with the state passed on here. Otherwise the outcome is the
// call's.
func (m *Module) do(ctx context.Context, c *sfrt.Call, p *prepared) (starlark.Value, error) {
	e := &exchange{m: m, c: c, p: p, host: strings.ToLower(p.url.Host), actx: ctx}
	var st retryState
	if _, err := c.State(&st); err != nil {
		return nil, sfrt.Permanent("error", err)
	}
	e.prior, e.spent = st.Attempts, st.Spent
	e.a = attemptInfo{N: len(e.prior) + 1}
	if p.deadline > 0 {
		e.deadlineAt = c.Started.Add(p.deadline)
		left := e.deadlineAt.Sub(c.Now())
		if left <= 0 {
			// The wait ended after the deadline (a run resumed late).
			e.stop = &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("the call's deadline of %s passed before attempt %d (%s)", p.deadline, e.a.N, plural(len(e.prior), "attempt"))}
			return nil, e.finish(nil, nil, nil)
		}
		// The deadline bounds the attempt too. The attempt's own timeout
		// and this bound are real time: they measure the network.
		var cancel context.CancelFunc
		e.actx, cancel = context.WithTimeoutCause(ctx, left, errCallDeadline)
		defer cancel()
	}

	e.t0 = time.Now()
	resp, err := e.send()
	var f *sfrt.Error
	if err != nil {
		resp = nil // a refused redirect comes with the previous response, closed
		if ctx.Err() != nil {
			return nil, ctx.Err() // the run was stopped: not the call's outcome
		}
		f = e.classify(err)
	} else if e.a.Status = resp.StatusCode; retryableStatus(resp.StatusCode) {
		f = &sfrt.Error{Kind: kindStatus, Message: fmt.Sprintf("%d %s", resp.StatusCode, statusText(resp.StatusCode)), Retryable: true}
		if ra, ok := retryafter.Parse(resp.Header, c.Now()); ok {
			f.RetryAfter = ra
			e.a.RetryAfterMs = ra.Milliseconds()
		}
	}
	if f != nil {
		if r := e.judge(f); r != nil {
			discard(resp)
			return nil, r
		}
	}
	// No other attempt follows: read the body of the call's response.
	var body []byte
	if resp != nil {
		body, err = e.readBody(resp)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			resp = nil
			if f == nil {
				// Reading failed: that is this attempt's failure.
				f = e.classify(err)
				if r := e.judge(f); r != nil {
					return nil, r
				}
			}
		}
	}
	return e.outcome(resp, body, f)
}

// send makes the attempt's request; the response's body is not read yet.
// go-retryablehttp is the request layer: it rewinds the body for every
// attempt and redirect, and drops pooled connections after a transport
// error. Its own retry loop is off (RetryMax 0, CheckRetry never retries):
// whether another attempt follows, and after what wait, is decided by
// judge and done by the runtime.
func (e *exchange) send() (*nethttp.Response, error) {
	p := e.p
	var body any
	if p.hasBody {
		body = p.body
	}
	req, err := retryablehttp.NewRequestWithContext(e.actx, p.method, p.url.String(), body)
	if err != nil {
		return nil, sfrt.Permanent("invalid_argument", fmt.Errorf("%s: %s", e.c.Builtin, p.scrub.str(scrubURLError(err))))
	}
	req.Header = p.header.Clone()
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	client := &retryablehttp.Client{
		HTTPClient: &nethttp.Client{Transport: e.m.transport, Timeout: p.timeout, CheckRedirect: e.checkRedirect},
		RetryMax:   0,
		CheckRetry: func(context.Context, *nethttp.Response, error) (bool, error) { return false, nil },
		// The attempt's error as it is (not "giving up after 1 attempt").
		ErrorHandler: func(resp *nethttp.Response, err error, _ int) (*nethttp.Response, error) { return resp, err },
	}
	return client.Do(req)
}

// discard lets the connection of a response that is not used be reused.
func discard(resp *nethttp.Response) {
	if resp == nil {
		return
	}
	io.CopyN(io.Discard, resp.Body, 4096)
	resp.Body.Close()
}

// judge records the attempt's failure and decides whether another attempt
// follows: it returns the Retry for the runtime, or nil when the call ends
// here (the failure is not retryable, the attempts are used up, or
// retrying stopped early: e.stop says why).
func (e *exchange) judge(f *sfrt.Error) *sfrt.Retry {
	a := &e.a
	a.DurationMs = time.Since(e.t0).Milliseconds()
	a.Kind, a.Error = f.Kind, e.p.scrub.str(f.Message)
	if !e.p.policy.ShouldRetry(f, a.N) {
		return nil
	}
	wait := e.p.policy.Delay(a.N, rand.Float64())
	if f.RetryAfter > wait {
		wait = f.RetryAfter
	}
	asked := ""
	if f.RetryAfter > 0 && f.RetryAfter >= wait {
		asked = fmt.Sprintf("the server asked to wait %s (Retry-After)", round(f.RetryAfter))
	} else {
		asked = fmt.Sprintf("the next retry is due in %s", round(wait))
	}
	if !e.deadlineAt.IsZero() {
		if left := e.deadlineAt.Sub(e.c.Now()); wait >= left {
			e.stop = &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("%s after %s; not retrying: %s but only %s is left before the call's deadline", f.Message, e.attemptsText(), asked, round(max(left, 0)))}
			return nil
		}
	} else if f.RetryAfter > e.m.opts.MaxRetryAfter {
		e.stop = &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("%s after %s; not retrying: %s, more than the %s a call without deadline= waits", f.Message, e.attemptsText(), asked, e.m.opts.MaxRetryAfter)}
		return nil
	}
	cost := e.m.budget.cfg.RetryCost
	if f.Kind == kindTimeout {
		cost = e.m.budget.cfg.TimeoutCost
	}
	if !e.m.budget.take(e.host, cost) {
		e.stop = &sfrt.Error{Kind: kindBudget, Message: fmt.Sprintf("%s after %s; not retrying: the retry budget for host %s is exhausted (too many failed calls to it recently)", f.Message, e.attemptsText(), e.host)}
		return nil
	}
	a.WaitMs = wait.Milliseconds()
	ev := e.c.Log.Info().Str("method", e.p.method).Str("url", e.p.display).Int("attempt", a.N).Str("kind", f.Kind).Dur("wait", wait)
	if a.Status != 0 {
		ev = ev.Int("status", a.Status)
	}
	ev.Msg("http retry")
	return &sfrt.Retry{
		Err:   &sfrt.Error{Kind: f.Kind, Message: a.Error, Retryable: true, RetryAfter: f.RetryAfter},
		After: wait,
		State: retryState{Attempts: append(e.prior[:len(e.prior):len(e.prior)], *a), Spent: cost},
	}
}

// outcome ends the call after its last attempt: resp (with its body) is
// the response if there is one, f the attempt's failure if any.
func (e *exchange) outcome(resp *nethttp.Response, body []byte, f *sfrt.Error) (starlark.Value, error) {
	if f == nil {
		e.a.DurationMs = time.Since(e.t0).Milliseconds()
		// The host answered: refund its budget.
		e.m.budget.refund(e.host, e.m.budget.cfg.Refund+e.spent)
	}
	if err := e.finish(resp, f, body); err != nil {
		return nil, err
	}
	v, size := e.response(resp, body)
	if size > 0 {
		// Received, but it cannot be recorded: fail now, with a failure
		// the journal holds, rather than fail to journal the call (and
		// send it again at every resume).
		f := tooLargeToJournal(size, len(body))
		f.Message += " (" + e.attemptsText() + ")"
		return nil, e.fail(f)
	}
	return v, nil
}

// finish records the call's detail and returns its failure, if it fails.
func (e *exchange) finish(resp *nethttp.Response, f *sfrt.Error, body []byte) error {
	p := e.p
	d := callDetail{Method: p.method, URL: p.display, IdempotencyKey: p.header.Get("Idempotency-Key"), Attempts: e.attempts()}
	if resp != nil {
		d.Status = resp.StatusCode
	}
	if e.stop != nil {
		d.Stopped = e.stop.Kind
	}
	if err := e.c.SetDetail(d); err != nil {
		return err
	}
	switch {
	case resp == nil && e.stop != nil:
		return e.fail(e.stop)
	case resp == nil:
		return e.fail(&sfrt.Error{Kind: f.Kind, Message: fmt.Sprintf("%s (%s)", f.Message, e.attemptsText())})
	case e.stop != nil && p.raise:
		return e.fail(e.stop)
	case resp.StatusCode >= 400 && p.raise:
		return e.fail(&sfrt.Error{Kind: kindStatus, Message: fmt.Sprintf("%d %s (%s)%s", resp.StatusCode, statusText(resp.StatusCode), e.attemptsText(), e.bodyStart(body))})
	}
	return nil
}

// fail returns the call's failure, as scripts see it: not retryable (the
// builtin has retried), naming the request, without secrets.
func (e *exchange) fail(f *sfrt.Error) error {
	p := e.p
	out := *f
	out.Message = p.scrub.str(fmt.Sprintf("%s %s: %s", p.method, p.display, f.Message))
	out.Retryable = false
	e.c.Log.Warn().Str("method", p.method).Str("url", p.display).Str("kind", out.Kind).Int("attempts", len(e.attempts())).Msg("http call failed")
	return &out
}

// attempts returns the call's attempts, this one included if it was made.
func (e *exchange) attempts() []attemptInfo {
	if e.t0.IsZero() {
		return append([]attemptInfo{}, e.prior...)
	}
	return append(e.prior[:len(e.prior):len(e.prior)], e.a)
}

// tooLargeError is a response over Options.MaxResponseBytes.
type tooLargeError struct{ limit, size int64 }

func (e *tooLargeError) Error() string {
	if e.size > 0 {
		return fmt.Sprintf("the response body (%d bytes) is larger than the limit of %d bytes", e.size, e.limit)
	}
	return fmt.Sprintf("the response body is larger than the limit of %d bytes", e.limit)
}

// readBody reads the body of the call's response, within the attempt:
// a failure while reading is that attempt's failure.
func (e *exchange) readBody(resp *nethttp.Response) ([]byte, error) {
	defer resp.Body.Close()
	limit := e.m.opts.MaxResponseBytes
	if resp.ContentLength > limit {
		return nil, &tooLargeError{limit: limit, size: resp.ContentLength}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, &tooLargeError{limit: limit}
	}
	return b, nil
}

// redirectError stops a redirect chain.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect applies the guards to every redirect, and drops
// credentials when a redirect leaves the host they were meant for.
func (e *exchange) checkRedirect(req *nethttp.Request, via []*nethttp.Request) error {
	if s := req.URL.Scheme; s != "http" && s != "https" {
		// Not a connection failure to retry: the server sent us elsewhere.
		return &redirectError{fmt.Sprintf("refusing to follow a redirect to a %s:// URL (%s): only http:// and https:// are followed", s, redactURL(req.URL.String()))}
	}
	if len(via) >= 10 {
		return &redirectError{"stopped after 10 redirects"}
	}
	if err := e.m.checkURL(req.URL); err != nil {
		return err
	}
	if !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
		for k := range req.Header {
			if sensitiveHeader(k) {
				req.Header.Del(k)
			}
		}
	}
	return nil
}

// classify turns a transport error into a failure.
func (e *exchange) classify(err error) *sfrt.Error {
	var (
		be   *blockedError
		se   *sfrt.Error
		tl   *tooLargeError
		re   *redirectError
		ne   net.Error
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
		cie  x509.CertificateInvalidError
		rhe  tls.RecordHeaderError
		uerr *url.Error
	)
	msg := err.Error()
	if errors.As(err, &uerr) {
		msg = uerr.Err.Error() // without the URL, which may hold secrets
	}
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &be):
		return &sfrt.Error{Kind: "blocked_host", Message: be.msg, Err: err}
	case errors.As(err, &tl):
		return &sfrt.Error{Kind: kindTooLarge, Message: tl.Error(), Err: err}
	case errors.As(err, &re):
		return &sfrt.Error{Kind: kindRedirect, Message: re.msg, Err: err}
	case errors.Is(context.Cause(e.actx), errCallDeadline):
		return &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("the call's deadline of %s passed during attempt %d", e.p.deadline, e.a.N), Err: err}
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he), errors.As(err, &cie), errors.As(err, &rhe):
		return &sfrt.Error{Kind: kindTLS, Message: msg, Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &sfrt.Error{Kind: kindTimeout, Message: fmt.Sprintf("attempt timed out after %s", e.p.timeout), Retryable: true, Err: err}
	}
	return &sfrt.Error{Kind: kindConnection, Message: msg, Retryable: true, Err: err}
}

// attemptsText says how many attempts the call made: "1 attempt", "3 attempts".
func (e *exchange) attemptsText() string { return plural(len(e.prior)+1, "attempt") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// bodyStart returns ": " and the start of the final response's body, on
// one line, for error messages.
func (e *exchange) bodyStart(body []byte) string {
	const max = 200
	b := e.p.scrub.bytes(body)
	if len(b) == 0 {
		return ""
	}
	cut := len(b) > max
	if cut {
		b = b[:max]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if cut {
		s += "…"
	}
	return ": " + s
}

// response builds the script's result, and returns the size of its
// journal form when that is more than a journal record holds (0 when it
// fits).
func (e *exchange) response(resp *nethttp.Response, raw []byte) (starlark.Value, int) {
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	headers := starlark.NewDict(len(keys))
	for _, k := range keys {
		lk := strings.ToLower(k)
		v := strings.Join(resp.Header[k], ", ")
		if lk == "set-cookie" || lk == "set-cookie2" {
			v = redacted
		}
		v = e.p.scrub.str(v)
		// A server may echo a credential in a header's name too.
		name := starlark.String(e.p.scrub.name(lk))
		if prev, found, _ := headers.Get(name); found {
			v = string(prev.(starlark.String)) + ", " + v // two names that scrub alike
		}
		_ = headers.SetKey(name, starlark.String(v))
	}
	body := string(e.p.scrub.bytes(raw))
	// The parsed body is journaled as a reference to the body (see
	// value.JSONOf): the journal holds the text once.
	var js starlark.Value = starlark.None
	if looksJSON(resp.Header.Get("Content-Type"), body) {
		if v, err := value.ParseJSONOf("body", body); err == nil {
			js = v
		}
	}
	v := starlarkstruct.FromStringDict(starlark.String("response"), starlark.StringDict{
		"status":   starlark.MakeInt(resp.StatusCode),
		"headers":  headers,
		"body":     starlark.String(body),
		"json":     js,
		"ok":       starlark.Bool(resp.StatusCode >= 200 && resp.StatusCode < 300),
		"attempts": starlark.MakeInt(len(e.prior) + 1),
		// On the runtime's clock, from the first attempt: waits between
		// attempts included, as long as the runtime made them last.
		"duration_ms": starlark.MakeInt64(e.c.Now().Sub(e.c.Started).Milliseconds()),
	})
	return v, responseJournalSize(v, body, headers, js)
}

func looksJSON(contentType string, body string) bool {
	if strings.Contains(strings.ToLower(contentType), "json") {
		return true
	}
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// retryableStatus reports the statuses worth retrying.
func retryableStatus(code int) bool {
	switch code {
	case nethttp.StatusRequestTimeout, nethttp.StatusTooManyRequests,
		nethttp.StatusInternalServerError, nethttp.StatusBadGateway,
		nethttp.StatusServiceUnavailable, nethttp.StatusGatewayTimeout:
		return true
	}
	return false
}

func statusText(code int) string {
	if t := nethttp.StatusText(code); t != "" {
		return t
	}
	return "status"
}

func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
