package http

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	nethttp "net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

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

// exchange is one call: its attempts and the decisions between them. The
// go-retryablehttp client calls its methods from the calling goroutine.
type exchange struct {
	m      *Module
	c      *sfrt.Call
	p      *prepared
	parent context.Context // the run's context: its end stops the call
	ctx    context.Context // parent with the call's deadline
	host   string

	attempts []attemptInfo
	t0       time.Time     // start of the current attempt
	decided  bool          // checkRetry has judged the current attempt
	failure  *sfrt.Error   // the current attempt's failure; nil if it got an answer
	stop     *sfrt.Error   // why retrying stopped early (budget, deadline)
	wait     time.Duration // the wait checkRetry chose
	spent    int           // tokens the latest retry cost
	body     []byte        // the final response's body
	resp     *nethttp.Response
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

// do performs the call with retries.
func (m *Module) do(ctx context.Context, c *sfrt.Call, p *prepared) (starlark.Value, error) {
	start := time.Now()
	e := &exchange{m: m, c: c, p: p, parent: ctx, ctx: ctx, host: strings.ToLower(p.url.Host)}
	if p.deadline > 0 {
		var cancel context.CancelFunc
		e.ctx, cancel = context.WithTimeout(ctx, p.deadline)
		defer cancel()
	}
	var body any
	if p.hasBody {
		body = p.body
	}
	req, err := retryablehttp.NewRequestWithContext(e.ctx, p.method, p.url.String(), body)
	if err != nil {
		return nil, sfrt.Permanent("invalid_argument", fmt.Errorf("%s: %s", c.Builtin, p.scrub.str(scrubURLError(err))))
	}
	req.Header = p.header.Clone()
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	req.SetResponseHandler(e.readBody)
	client := &retryablehttp.Client{
		HTTPClient: &nethttp.Client{
			Transport:     m.transport,
			Timeout:       p.timeout,
			CheckRedirect: e.checkRedirect,
		},
		RetryMax:       p.policy.WithDefaults().MaxAttempts - 1,
		RequestLogHook: e.beforeAttempt,
		CheckRetry:     e.checkRetry,
		Backoff:        e.backoff,
		ErrorHandler:   e.errorHandler,
	}
	resp, err := client.Do(req)
	if perr := ctx.Err(); perr != nil {
		// The run was stopped: this is not the call's outcome.
		return nil, perr
	}
	elapsed := time.Since(start)

	d := callDetail{Method: p.method, URL: p.display, IdempotencyKey: req.Header.Get("Idempotency-Key"), Attempts: e.attempts}
	if resp != nil {
		d.Status = resp.StatusCode
	}
	if e.stop != nil {
		d.Stopped = e.stop.Kind
	}
	if derr := c.SetDetail(d); derr != nil {
		return nil, derr
	}
	if e.failure == nil && err == nil {
		// The host answered: refund its budget.
		m.budget.refund(e.host, m.budget.cfg.Refund+e.spent)
	}

	var fail *sfrt.Error
	switch {
	case err != nil || resp == nil:
		fail = e.finalFailure(err)
	case e.stop != nil && p.raise:
		fail = e.stop
	case resp.StatusCode >= 400 && p.raise:
		fail = &sfrt.Error{Kind: kindStatus, Message: fmt.Sprintf("%d %s (%s)%s", resp.StatusCode, statusText(resp.StatusCode), e.attemptsText(), e.bodyStart())}
	}
	if fail != nil {
		out := *fail
		out.Message = p.scrub.str(fmt.Sprintf("%s %s: %s", p.method, p.display, fail.Message))
		out.Retryable = false
		c.Log.Warn().Str("method", p.method).Str("url", p.display).Str("kind", out.Kind).Int("attempts", len(e.attempts)).Msg("http call failed")
		return nil, &out
	}
	return e.response(resp, elapsed), nil
}

// beforeAttempt starts an attempt (go-retryablehttp's RequestLogHook).
func (e *exchange) beforeAttempt(_ retryablehttp.Logger, _ *nethttp.Request, i int) {
	e.attempts = append(e.attempts, attemptInfo{N: i + 1})
	e.t0 = time.Now()
	e.decided, e.failure, e.stop, e.wait, e.body, e.resp = false, nil, nil, 0, nil, nil
}

// checkRetry judges an attempt and decides whether to retry
// (go-retryablehttp's CheckRetry). It runs a second time for the same
// attempt when reading the final response's body failed.
func (e *exchange) checkRetry(ctx context.Context, resp *nethttp.Response, err error) (bool, error) {
	if perr := e.parent.Err(); perr != nil {
		return false, perr
	}
	a := &e.attempts[len(e.attempts)-1]
	if e.decided && (err == nil || e.failure != nil) {
		return false, nil // the first judgement stands
	}
	e.decided = true
	a.DurationMs = time.Since(e.t0).Milliseconds()
	var f *sfrt.Error
	if resp != nil {
		a.Status = resp.StatusCode
	}
	switch {
	case err != nil:
		f = e.classify(err)
	case retryableStatus(resp.StatusCode):
		f = &sfrt.Error{Kind: kindStatus, Message: fmt.Sprintf("%d %s", resp.StatusCode, statusText(resp.StatusCode)), Retryable: true}
		if ra, ok := retryAfter(resp.Header, e.m.opts.Now()); ok {
			f.RetryAfter = ra
			a.RetryAfterMs = ra.Milliseconds()
		}
	default:
		e.failure = nil
		return false, nil
	}
	e.failure = f
	a.Kind, a.Error = f.Kind, e.p.scrub.str(f.Message)
	if !e.p.policy.ShouldRetry(f, a.N) {
		return false, nil
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
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); wait >= left {
			e.stop = &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("%s after %s; not retrying: %s but only %s is left before the call's deadline", f.Message, e.attemptsText(), asked, round(left))}
			return false, nil
		}
	} else if f.RetryAfter > e.m.opts.MaxRetryAfter {
		e.stop = &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("%s after %s; not retrying: %s, more than the %s a call without deadline= waits", f.Message, e.attemptsText(), asked, e.m.opts.MaxRetryAfter)}
		return false, nil
	}
	cost := e.m.budget.cfg.RetryCost
	if f.Kind == kindTimeout {
		cost = e.m.budget.cfg.TimeoutCost
	}
	if !e.m.budget.take(e.host, cost) {
		e.stop = &sfrt.Error{Kind: kindBudget, Message: fmt.Sprintf("%s after %s; not retrying: the retry budget for host %s is exhausted (too many failed calls to it recently)", f.Message, e.attemptsText(), e.host)}
		return false, nil
	}
	e.spent = cost
	e.wait = wait
	a.WaitMs = wait.Milliseconds()
	ev := e.c.Log.Info().Str("method", e.p.method).Str("url", e.p.display).Int("attempt", a.N).Str("kind", f.Kind).Dur("wait", wait)
	if a.Status != 0 {
		ev = ev.Int("status", a.Status)
	}
	ev.Msg("http retry")
	return true, nil
}

// backoff returns the wait checkRetry chose (go-retryablehttp's Backoff).
func (e *exchange) backoff(_, _ time.Duration, _ int, _ *nethttp.Response) time.Duration {
	return e.wait
}

// errorHandler returns the last error as it is (go-retryablehttp's
// ErrorHandler); do turns it into the call's failure.
func (e *exchange) errorHandler(resp *nethttp.Response, err error, _ int) (*nethttp.Response, error) {
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err == nil {
		err = errors.New("request failed")
	}
	return nil, err
}

// tooLargeError is a response over Options.MaxResponseBytes.
type tooLargeError struct{ limit, size int64 }

func (e *tooLargeError) Error() string {
	if e.size > 0 {
		return fmt.Sprintf("the response body (%d bytes) is larger than the limit of %d bytes", e.size, e.limit)
	}
	return fmt.Sprintf("the response body is larger than the limit of %d bytes", e.limit)
}

// readBody reads the final response's body within the attempt, so that a
// failure while reading is that attempt's failure.
func (e *exchange) readBody(resp *nethttp.Response) error {
	defer resp.Body.Close()
	limit := e.m.opts.MaxResponseBytes
	if resp.ContentLength > limit {
		return &tooLargeError{limit: limit, size: resp.ContentLength}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("reading the response body: %w", err)
	}
	if int64(len(b)) > limit {
		return &tooLargeError{limit: limit}
	}
	e.body, e.resp = b, resp
	return nil
}

// redirectError stops a redirect chain.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect applies the guards to every redirect, and drops
// credentials when a redirect leaves the host they were meant for.
func (e *exchange) checkRedirect(req *nethttp.Request, via []*nethttp.Request) error {
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
	case e.ctx.Err() != nil:
		return &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("the call's deadline of %s passed during attempt %d", e.p.deadline, len(e.attempts)), Err: err}
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he), errors.As(err, &cie), errors.As(err, &rhe):
		return &sfrt.Error{Kind: kindTLS, Message: msg, Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		return &sfrt.Error{Kind: kindTimeout, Message: fmt.Sprintf("attempt timed out after %s", e.p.timeout), Retryable: true, Err: err}
	}
	return &sfrt.Error{Kind: kindConnection, Message: msg, Retryable: true, Err: err}
}

// finalFailure is the call's failure when it ended without a response.
func (e *exchange) finalFailure(err error) *sfrt.Error {
	switch {
	case e.stop != nil:
		return e.stop
	case e.ctx.Err() != nil && e.p.deadline > 0:
		return &sfrt.Error{Kind: kindDeadline, Message: fmt.Sprintf("the call's deadline of %s passed (%s)", e.p.deadline, e.attemptsText())}
	}
	f := e.failure
	if f == nil {
		f = e.classify(err)
	}
	out := *f
	out.Message = fmt.Sprintf("%s (%s)", f.Message, e.attemptsText())
	return &out
}

func (e *exchange) attemptsText() string {
	if n := len(e.attempts); n != 1 {
		return fmt.Sprintf("%d attempts", n)
	}
	return "1 attempt"
}

// bodyStart returns ": " and the start of the final response's body, on
// one line, for error messages.
func (e *exchange) bodyStart() string {
	const max = 200
	b := e.p.scrub.bytes(e.body)
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

// response builds the script's result.
func (e *exchange) response(resp *nethttp.Response, elapsed time.Duration) starlark.Value {
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
		_ = headers.SetKey(starlark.String(lk), starlark.String(e.p.scrub.str(v)))
	}
	body := e.p.scrub.bytes(e.body)
	var js starlark.Value = starlark.None
	if looksJSON(resp.Header.Get("Content-Type"), body) {
		if v, err := value.FromJSON(body); err == nil {
			js = v
		}
	}
	return starlarkstruct.FromStringDict(starlark.String("response"), starlark.StringDict{
		"status":      starlark.MakeInt(resp.StatusCode),
		"headers":     headers,
		"body":        starlark.String(body),
		"json":        js,
		"ok":          starlark.Bool(resp.StatusCode >= 200 && resp.StatusCode < 300),
		"attempts":    starlark.MakeInt(len(e.attempts)),
		"duration_ms": starlark.MakeInt64(elapsed.Milliseconds()),
	})
}

func looksJSON(contentType string, body []byte) bool {
	if strings.Contains(strings.ToLower(contentType), "json") {
		return true
	}
	for _, c := range body {
		switch c {
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

// retryAfter reads the wait a response asks for: retry-after-ms
// (milliseconds), else Retry-After (seconds or an HTTP date).
func retryAfter(h nethttp.Header, now time.Time) (time.Duration, bool) {
	const maxWait = 365 * 24 * time.Hour
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 && !math.IsInf(ms, 0) {
			return min(time.Duration(ms*float64(time.Millisecond)), maxWait), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || math.IsNaN(s) {
			return 0, false
		}
		if s > maxWait.Seconds() {
			return maxWait, true
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := nethttp.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxWait), true
	}
	return 0, false
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
