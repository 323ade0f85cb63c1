package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HTTPTransport wraps the transport of the http builtin: requests go
// through base (http.DefaultTransport when nil) unless a rule injects a
// fault. Its signature fits builtins/http Options.WrapTransport:
//
//	httpOpts.WrapTransport = inj.HTTPTransport
func (i *Injector) HTTPTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if i == nil {
		return base
	}
	return &transport{inj: i, base: base, builtin: HTTP}
}

// LLMClient returns a copy of base (nil: a pooled client like the llm
// builtin's default) whose transport injects the profile's llm faults,
// rendered in each provider's wire format. Use it as builtins/llm
// Options.HTTPClient, together with WrapLLMProvider as
// Options.WrapProvider (which tells it which configured provider each
// request is for, and fails the fake provider):
//
//	llmOpts.HTTPClient = inj.LLMClient(nil)
//	llmOpts.WrapProvider = inj.WrapLLMProvider
//
// Without WrapLLMProvider the provider type is inferred from the request
// (its path and headers; an OpenAI-format request to a host other than
// api.openai.com counts as openai_compatible), and provider selectors
// naming configured providers do not match.
func (i *Injector) LLMClient(base *http.Client) *http.Client {
	if i == nil {
		return base
	}
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	rt := c.Transport
	if rt == nil {
		rt = defaultLLMTransport()
	}
	c.Transport = &transport{inj: i, base: rt, builtin: LLM}
	return c
}

// defaultLLMTransport is like the llm builtin's default: a pool sized for
// concurrent calls.
func defaultLLMTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return t
}

// transport injects faults below a builtin's HTTP client.
type transport struct {
	inj     *Injector
	base    http.RoundTripper
	builtin string
}

func (t *transport) describe(req *http.Request) *reqInfo {
	ri := &reqInfo{builtin: t.builtin, host: strings.ToLower(req.URL.Host), method: req.Method, path: req.URL.Path,
		key: req.Header.Get("Idempotency-Key")}
	ri.port = req.URL.Port()
	if ri.port == "" {
		ri.port = "80"
		if req.URL.Scheme == "https" {
			ri.port = "443"
		}
	}
	if t.builtin == LLM {
		if tag, ok := req.Context().Value(tagKey{}).(*llmTag); ok {
			ri.provider, ri.kind = tag.name, tag.kind
			if tag.key != "" {
				ri.key = tag.key
			}
		} else {
			ri.kind = inferKind(req)
			ri.provider = ri.kind
		}
	}
	return ri
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ri := t.describe(req)
	d := t.inj.decide(ri)
	if d.none() {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	if d.delay > 0 {
		if err := sleep(ctx, d.delay); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	if r := d.term; r != nil {
		var model string
		if t.builtin == LLM && r.Fault == Status && (!r.AfterSend || req.GetBody != nil) {
			model = requestModel(req)
		}
		if r.AfterSend {
			resp, err := t.base.RoundTrip(req)
			if err != nil {
				return nil, err // a real failure stands
			}
			drain(resp.Body)
		} else {
			closeBody(req)
		}
		switch r.Fault {
		case Timeout:
			return nil, hang(ctx, r.Hang, req.URL)
		case Reset:
			return nil, resetError(req.URL)
		}
		if t.builtin == LLM {
			return llmResponse(req, ri, r, d.sent, model, d.n), nil
		}
		return plainResponse(req, r), nil
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || d.slow == nil {
		return resp, err
	}
	resp.Body = &slowBody{ctx: ctx, rc: resp.Body, bytes: d.slow.Bytes, every: d.slow.Every}
	return resp, nil
}

// CloseIdleConnections passes on to the base transport.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// drain reads and closes a response body whose answer is to be lost, so
// that its connection can be reused.
func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 4<<20))
	rc.Close()
}

// sleep waits d, or until ctx ends (returning its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hostAddr is a net.Addr naming the host a request was for.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

// hang waits until ctx ends, or for d when it is set, and fails as an
// unanswered request does: the context's error, or an i/o timeout.
func hang(ctx context.Context, d time.Duration, u *url.URL) error {
	if d <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	if err := sleep(ctx, d); err != nil {
		return err
	}
	return &net.OpError{Op: "read", Net: "tcp", Addr: hostAddrOf(u), Err: os.ErrDeadlineExceeded}
}

// resetError is a connection reset by the peer, as the net package
// reports it: a *net.OpError wrapping syscall.ECONNRESET.
func resetError(u *url.URL) error {
	return &net.OpError{Op: "read", Net: "tcp", Addr: hostAddrOf(u), Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func hostAddrOf(u *url.URL) net.Addr {
	if u == nil || u.Hostname() == "" {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return hostAddr(net.JoinHostPort(u.Hostname(), port))
}

// slowBody trickles a body: at most bytes per read, each after a wait of
// every. It fails with the request context's error when that ends.
type slowBody struct {
	ctx   context.Context
	rc    io.ReadCloser
	bytes int
	every time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > b.bytes {
		p = p[:b.bytes]
	}
	if err := sleep(b.ctx, b.every); err != nil {
		return 0, err
	}
	return b.rc.Read(p)
}

func (b *slowBody) Close() error { return b.rc.Close() }

// plainResponse is the http builtin's injected status: a short text body,
// and for 429 (and 503 and 529 when the rule names a wait) Retry-After in
// whole seconds, rounded up, plus Retry-After-Ms when the wait is not a
// whole number of seconds.
func plainResponse(req *http.Request, r *Rule) *http.Response {
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	setRetryAfter(h, r.RetryAfter, true)
	text := statusText(r.Status)
	body := fmt.Sprintf("%d %s\n", r.Status, text)
	return response(req, r.Status, h, body)
}

// setRetryAfter writes retry-after (whole seconds, rounded up) and, when
// ms is set and the wait is not whole seconds, retry-after-ms.
func setRetryAfter(h http.Header, d time.Duration, ms bool) {
	if d <= 0 {
		return
	}
	h.Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
	if ms && d%time.Second != 0 {
		h.Set("Retry-After-Ms", strconv.FormatInt(d.Milliseconds(), 10))
	}
}

func statusText(code int) string {
	if code == 529 {
		return "Site Overloaded"
	}
	return http.StatusText(code)
}

// response builds an injected response. It carries X-Starflow-Chaos so
// that logs and journaled headers show it was injected.
func response(req *http.Request, status int, h http.Header, body string) *http.Response {
	h.Set("X-Starflow-Chaos", strconv.Itoa(status))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, statusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader([]byte(body))),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
