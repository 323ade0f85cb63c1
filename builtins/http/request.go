package http

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	nethttp "net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/internal/value"
	sfrt "github.com/starflow/starflow/runtime"
)

// prepared is a call's request, with its secrets resolved.
type prepared struct {
	method   string
	url      *url.URL // the real URL, secrets included
	display  string   // the URL for messages, logs and details: no secrets
	header   nethttp.Header
	body     []byte
	hasBody  bool
	timeout  time.Duration
	deadline time.Duration // 0: none
	policy   sfrt.RetryPolicy
	raise    bool
	scrub    *scrubber
}

// runDefaults are the script-wide settings of http.defaults().
type runDefaults struct {
	retry    *sfrt.RetryPolicy
	timeout  time.Duration
	deadline time.Duration
}

const defaultsKey = "http.defaults"

func invalid(format string, args ...any) error {
	return sfrt.Permanent("invalid_argument", fmt.Errorf(format, args...))
}

// prepare reads the call's arguments and builds its request.
func (m *Module) prepare(c *sfrt.Call, method string) (*prepared, error) {
	var (
		rawURL                             string
		params, headers, jsonv, body, auth starlark.Value
		timeout, deadline, retry           starlark.Value
		raise                              = true
	)
	pairs := []any{}
	if method == "" {
		pairs = append(pairs, "method", &method)
	}
	pairs = append(pairs, "url", &rawURL, "params?", &params, "headers?", &headers, "json?", &jsonv,
		"body?", &body, "auth?", &auth, "timeout?", &timeout, "deadline?", &deadline, "retry?", &retry,
		"raise_for_status?", &raise)
	if err := c.Unpack(pairs...); err != nil {
		return nil, err
	}
	method = strings.ToUpper(strings.TrimSpace(method))
	if !validToken(method) {
		return nil, invalid("%s: %q is not an HTTP method", c.Builtin, method)
	}
	b := &builder{c: c, scrub: &scrubber{}}
	p := &prepared{method: method, header: nethttp.Header{}, raise: raise, scrub: b.scrub}

	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, invalid("%s: invalid url: %v", c.Builtin, scrubURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, invalid("%s: url must start with http:// or https://, got %q", c.Builtin, redactURL(rawURL))
	}
	if u.Host == "" {
		return nil, invalid("%s: url %q has no host", c.Builtin, redactURL(rawURL))
	}
	u.Fragment, u.RawFragment = "", ""
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			b.scrub.add(pw, redacted)
		}
	}
	if err := m.checkURL(u); err != nil {
		return nil, err
	}

	// Query: the URL's own, kept byte for byte (a signed URL must not be
	// re-encoded), then params= in dict order.
	for k, vs := range u.Query() {
		if sensitiveName(k) {
			for _, v := range vs {
				b.scrub.add(v, redacted)
			}
		}
	}
	display := redactURL(u.String())
	if params != nil && params != starlark.None {
		d, ok := params.(*starlark.Dict)
		if !ok {
			return nil, invalid("%s: params must be a dict, got %s", c.Builtin, params.Type())
		}
		var real, shown []string
		for _, kv := range d.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, invalid("%s: params keys must be strings, got %s", c.Builtin, kv[0].Type())
			}
			key := url.QueryEscape(string(k))
			err := b.each(kv[1], func(v starlark.Value) error {
				r, disp, err := b.text(v, "params["+string(k)+"]", sensitiveName(string(k)))
				if err != nil {
					return err
				}
				real = append(real, key+"="+url.QueryEscape(r))
				if disp != r {
					shown = append(shown, key+"="+disp) // a marker: REDACTED, <secret NAME>
				} else {
					shown = append(shown, key+"="+url.QueryEscape(r))
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		if len(real) > 0 {
			sep := "?"
			if u.RawQuery != "" {
				u.RawQuery += "&"
				sep = "&"
			} else if u.ForceQuery {
				sep = ""
			}
			u.RawQuery += strings.Join(real, "&")
			display += sep + strings.Join(shown, "&")
		}
	}
	p.url = u
	p.display = display

	// Headers.
	if headers != nil && headers != starlark.None {
		d, ok := headers.(*starlark.Dict)
		if !ok {
			return nil, invalid("%s: headers must be a dict, got %s", c.Builtin, headers.Type())
		}
		for _, kv := range d.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, invalid("%s: header names must be strings, got %s", c.Builtin, kv[0].Type())
			}
			if !validToken(string(k)) {
				return nil, invalid("%s: header name %s is not valid", c.Builtin, kv[0].String())
			}
			name := nethttp.CanonicalHeaderKey(string(k))
			p.header.Del(name)
			err := b.each(kv[1], func(v starlark.Value) error {
				// Text only: a number or a bool would go out as Go formats
				// it (True as "true"), rarely what was meant. The error
				// names the type, never the value.
				switch v.(type) {
				case starlark.String, value.Secret:
				default:
					if _, isAuth := authStruct(v); !isAuth {
						return invalid("%s: the value of header %s must be a string, secret() or an auth value (http.bearer, http.basic, http.auth), got %s", c.Builtin, name, v.Type())
					}
				}
				real, _, err := b.text(v, "headers["+name+"]", sensitiveHeader(name))
				if err != nil {
					return err
				}
				if !validHeaderValue(real) {
					return invalid("%s: the value of header %s contains a line break or control character", c.Builtin, name)
				}
				p.header.Add(name, real)
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if auth != nil && auth != starlark.None {
		var real string
		var err error
		if _, isAuth := authStruct(auth); isAuth {
			real, _, err = b.text(auth, "auth", true)
		} else if t, ok := auth.(starlark.Tuple); ok && len(t) == 2 {
			real, err = b.basic(t[0], t[1])
		} else {
			err = invalid("%s: auth must be http.bearer(token), http.basic(user, password), http.auth(scheme, credentials) or a (user, password) tuple, got %s", c.Builtin, auth.Type())
		}
		if err != nil {
			return nil, err
		}
		p.header.Set("Authorization", real)
	}

	// Body.
	hasJSON := jsonv != nil && jsonv != starlark.None
	hasBody := body != nil && body != starlark.None
	switch {
	case hasJSON && hasBody:
		return nil, invalid("%s: pass json= or body=, not both", c.Builtin)
	case hasJSON:
		var buf bytes.Buffer
		if err := b.writeJSON(&buf, jsonv, "json", false, 0); err != nil {
			return nil, err
		}
		p.body, p.hasBody = buf.Bytes(), true
		setDefault(p.header, "Content-Type", "application/json")
	case hasBody:
		switch v := body.(type) {
		case starlark.String:
			p.body = []byte(v)
			setDefault(p.header, "Content-Type", "text/plain; charset=utf-8")
		case starlark.Bytes:
			p.body = []byte(v)
			setDefault(p.header, "Content-Type", "application/octet-stream")
		case value.Secret:
			real, _, err := b.text(v, "body", true)
			if err != nil {
				return nil, err
			}
			p.body = []byte(real)
			setDefault(p.header, "Content-Type", "text/plain; charset=utf-8")
		case *starlark.Dict:
			form := url.Values{}
			for _, kv := range v.Items() {
				k, ok := kv[0].(starlark.String)
				if !ok {
					return nil, invalid("%s: body keys must be strings, got %s", c.Builtin, kv[0].Type())
				}
				err := b.each(kv[1], func(x starlark.Value) error {
					real, _, err := b.text(x, "body["+string(k)+"]", sensitiveName(string(k)))
					form.Add(string(k), real)
					return err
				})
				if err != nil {
					return nil, err
				}
			}
			p.body = []byte(form.Encode())
			setDefault(p.header, "Content-Type", "application/x-www-form-urlencoded")
		default:
			return nil, invalid("%s: body must be a string, bytes, a dict (form fields) or a secret, got %s", c.Builtin, body.Type())
		}
		p.hasBody = true
	}

	setDefault(p.header, "User-Agent", "starflow")
	if method != nethttp.MethodGet && method != nethttp.MethodHead {
		setDefault(p.header, "Idempotency-Key", c.Key)
	}

	// Timeouts and retries: the call's arguments, else http.defaults(),
	// else the module's options.
	d, _ := c.RunValue(defaultsKey).(*runDefaults)
	if d == nil {
		d = &runDefaults{}
	}
	p.policy = m.opts.Retry
	if d.retry != nil {
		p.policy = overlay(p.policy, *d.retry)
	}
	if retry != nil && retry != starlark.None {
		rp, err := retryPolicy(retry)
		if err != nil {
			return nil, invalid("%s: %v", c.Builtin, err)
		}
		p.policy = overlay(p.policy, rp)
	}
	p.timeout = firstDuration(d.timeout, m.opts.Timeout)
	if timeout != nil && timeout != starlark.None {
		t, err := positiveDuration(timeout)
		if err != nil {
			return nil, invalid("%s: timeout: %v", c.Builtin, err)
		}
		p.timeout = t
	}
	p.deadline = d.deadline
	if deadline != nil && deadline != starlark.None {
		t, err := positiveDuration(deadline)
		if err != nil {
			return nil, invalid("%s: deadline: %v", c.Builtin, err)
		}
		p.deadline = t
	}
	return p, nil
}

func setDefault(h nethttp.Header, k, v string) {
	if _, ok := h[k]; !ok {
		h.Set(k, v)
	}
}

func firstDuration(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}

func positiveDuration(v starlark.Value) (time.Duration, error) {
	d, err := builtins.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return d, nil
}

// retryPolicy reads a retry= value with builtins.RetryPolicyFrom. A dict
// is passed as a struct of its entries: RetryPolicyFrom reads a missing
// dict key as None and rejects it.
func retryPolicy(v starlark.Value) (sfrt.RetryPolicy, error) {
	if d, ok := v.(*starlark.Dict); ok {
		sd := starlark.StringDict{}
		for _, kv := range d.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return sfrt.RetryPolicy{}, fmt.Errorf("retry: policy keys must be strings, got %s", kv[0].Type())
			}
			switch k {
			case "max_attempts", "initial", "coefficient", "max_interval", "jitter", "non_retryable":
			default:
				return sfrt.RetryPolicy{}, fmt.Errorf("retry: unknown policy field %s", k)
			}
			sd[string(k)] = kv[1]
		}
		v = starlarkstruct.FromStringDict(starlark.String("retry_policy"), sd)
	}
	return builtins.RetryPolicyFrom(v)
}

// overlay returns base with the fields set in top replacing its own.
// Policies stay raw (not WithDefaults) so that a disabled jitter (negative)
// stays disabled.
func overlay(base, top sfrt.RetryPolicy) sfrt.RetryPolicy {
	if top.MaxAttempts != 0 {
		base.MaxAttempts = top.MaxAttempts
	}
	if top.InitialInterval != 0 {
		base.InitialInterval = top.InitialInterval
	}
	if top.BackoffCoefficient != 0 {
		base.BackoffCoefficient = top.BackoffCoefficient
	}
	if top.MaxInterval != 0 {
		base.MaxInterval = top.MaxInterval
	}
	if top.Jitter != 0 {
		base.Jitter = top.Jitter
	}
	if top.NonRetryable != nil {
		base.NonRetryable = top.NonRetryable
	}
	return base
}

// builder converts argument values to request text, resolving secrets and
// remembering every credential so that it can be scrubbed from anything
// the call records.
type builder struct {
	c     *sfrt.Call
	scrub *scrubber
}

// each calls fn for v, or for each element of v if it is a list or tuple.
func (b *builder) each(v starlark.Value, fn func(starlark.Value) error) error {
	switch l := v.(type) {
	case *starlark.List:
		for i := 0; i < l.Len(); i++ {
			if err := fn(l.Index(i)); err != nil {
				return err
			}
		}
		return nil
	case starlark.Tuple:
		for _, x := range l {
			if err := fn(x); err != nil {
				return err
			}
		}
		return nil
	}
	return fn(v)
}

// text returns the request text for v and how it may be shown. sensitive
// says that a plain string here is a credential.
func (b *builder) text(v starlark.Value, what string, sensitive bool) (real, shown string, err error) {
	switch x := v.(type) {
	case starlark.String:
		if sensitive {
			b.scrub.add(string(x), redacted)
			return string(x), redacted, nil
		}
		return string(x), string(x), nil
	case value.Secret:
		s, err := b.c.Secret(x)
		if err != nil {
			return "", "", err
		}
		b.scrub.add(s, x.String())
		return s, x.String(), nil
	case starlark.Int:
		return x.String(), x.String(), nil
	case starlark.Float:
		s := strconv.FormatFloat(float64(x), 'g', -1, 64)
		return s, s, nil
	case starlark.Bool:
		s := strconv.FormatBool(bool(x))
		return s, s, nil
	case *starlarkstruct.Struct:
		if scheme, ok := authStruct(x); ok {
			if scheme == "Basic" {
				user, _ := x.Attr("user")
				pw, _ := x.Attr("password")
				s, err := b.basic(user, pw)
				return s, "Basic " + redacted, err
			}
			cred, _ := x.Attr("credentials")
			s, disp, err := b.text(cred, what, true)
			if err != nil {
				return "", "", err
			}
			return scheme + " " + s, scheme + " " + disp, nil
		}
	}
	return "", "", invalid("%s: %s must be a string, number, bool or secret(), got %s", b.c.Builtin, what, v.Type())
}

// basic builds a Basic authorization value.
func (b *builder) basic(user, password starlark.Value) (string, error) {
	u, _, err := b.text(user, "basic auth user", false)
	if err != nil {
		return "", err
	}
	pw, _, err := b.text(password, "basic auth password", true)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding.EncodeToString([]byte(u + ":" + pw))
	b.scrub.add(enc, redacted)
	return "Basic " + enc, nil
}

// writeJSON encodes v as JSON, resolving secrets and keeping dict order.
func (b *builder) writeJSON(buf *bytes.Buffer, v starlark.Value, path string, sensitive bool, depth int) error {
	if depth > 100 {
		return invalid("%s: %s is nested too deeply", b.c.Builtin, path)
	}
	switch x := v.(type) {
	case starlark.NoneType:
		buf.WriteString("null")
	case starlark.Bool:
		buf.WriteString(strconv.FormatBool(bool(x)))
	case starlark.Int:
		buf.WriteString(x.String())
	case starlark.Float:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return invalid("%s: %s: %v cannot be sent as JSON", b.c.Builtin, path, x)
		}
		buf.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
	case starlark.String:
		if sensitive {
			b.scrub.add(string(x), redacted)
		}
		buf.WriteString(jsonString(string(x)))
	case value.Secret:
		s, err := b.c.Secret(x)
		if err != nil {
			return err
		}
		b.scrub.add(s, x.String())
		buf.WriteString(jsonString(s))
	case *starlark.List, starlark.Tuple:
		buf.WriteByte('[')
		i := 0
		err := b.each(x, func(e starlark.Value) error {
			if i > 0 {
				buf.WriteByte(',')
			}
			i++
			return b.writeJSON(buf, e, fmt.Sprintf("%s[%d]", path, i-1), sensitive, depth+1)
		})
		if err != nil {
			return err
		}
		buf.WriteByte(']')
	case *starlark.Dict:
		buf.WriteByte('{')
		for i, kv := range x.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return invalid("%s: %s: JSON object keys must be strings, got %s", b.c.Builtin, path, kv[0].Type())
			}
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(jsonString(string(k)))
			buf.WriteByte(':')
			if err := b.writeJSON(buf, kv[1], fmt.Sprintf("%s[%q]", path, string(k)), sensitiveName(string(k)), depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case *starlarkstruct.Struct:
		sd := starlark.StringDict{}
		x.ToStringDict(sd)
		keys := sd.Keys()
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(jsonString(k))
			buf.WriteByte(':')
			if err := b.writeJSON(buf, sd[k], path+"."+k, sensitiveName(k), depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return invalid("%s: %s: a %s cannot be sent as JSON", b.c.Builtin, path, v.Type())
	}
	return nil
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}

// validToken reports whether s is an HTTP token (a method or header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// Helpers for scripts (not journaled).

var authCtor = starlark.String("http.auth")

// authStruct reports whether v is a value built by http.auth, http.bearer
// or http.basic, and its scheme.
func authStruct(v starlark.Value) (string, bool) {
	s, ok := v.(*starlarkstruct.Struct)
	if !ok || s.Constructor() != authCtor {
		return "", false
	}
	scheme, _ := s.Attr("scheme")
	str, _ := starlark.AsString(scheme)
	return str, true
}

func credentialArg(fn string, v starlark.Value) error {
	switch v.(type) {
	case starlark.String, value.Secret:
		return nil
	}
	return fmt.Errorf("%s: want a string or secret(), got %s", fn, v.Type())
}

// http.auth(scheme, credentials): Authorization: <scheme> <credentials>.
func authFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var scheme string
	var cred starlark.Value
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "scheme", &scheme, "credentials", &cred); err != nil {
		return nil, err
	}
	if !validToken(scheme) {
		return nil, fmt.Errorf("%s: %q is not a valid authorization scheme", fn.Name(), scheme)
	}
	if err := credentialArg(fn.Name(), cred); err != nil {
		return nil, err
	}
	return starlarkstruct.FromStringDict(authCtor, starlark.StringDict{
		"scheme": starlark.String(scheme), "credentials": cred,
	}), nil
}

// http.bearer(token): Authorization: Bearer <token>.
func bearerFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var tok starlark.Value
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "token", &tok); err != nil {
		return nil, err
	}
	if err := credentialArg(fn.Name(), tok); err != nil {
		return nil, err
	}
	return starlarkstruct.FromStringDict(authCtor, starlark.StringDict{
		"scheme": starlark.String("Bearer"), "credentials": tok,
	}), nil
}

// http.basic(user, password): Authorization: Basic base64(user:password).
func basicFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var user, pw starlark.Value
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "user", &user, "password", &pw); err != nil {
		return nil, err
	}
	if err := credentialArg(fn.Name(), user); err != nil {
		return nil, err
	}
	if err := credentialArg(fn.Name(), pw); err != nil {
		return nil, err
	}
	return starlarkstruct.FromStringDict(authCtor, starlark.StringDict{
		"scheme": starlark.String("Basic"), "user": user, "password": pw,
	}), nil
}

// http.defaults(retry=, timeout=, deadline=) sets script-wide defaults for
// the rest of the run; arguments not given keep their current value.
func defaultsFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var retry, timeout, deadline starlark.Value
	if len(args) > 0 {
		return nil, fmt.Errorf("%s: takes keyword arguments only (retry=, timeout=, deadline=)", fn.Name())
	}
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "retry?", &retry, "timeout?", &timeout, "deadline?", &deadline); err != nil {
		return nil, err
	}
	d := &runDefaults{}
	if cur, ok := sfrt.RunValueOf(thread, defaultsKey).(*runDefaults); ok {
		*d = *cur
	}
	if retry != nil {
		if retry == starlark.None {
			d.retry = nil
		} else {
			p, err := retryPolicy(retry)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", fn.Name(), err)
			}
			d.retry = &p
		}
	}
	for _, x := range []struct {
		v   starlark.Value
		dst *time.Duration
		n   string
	}{{timeout, &d.timeout, "timeout"}, {deadline, &d.deadline, "deadline"}} {
		switch {
		case x.v == nil:
		case x.v == starlark.None:
			*x.dst = 0
		default:
			t, err := positiveDuration(x.v)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %v", fn.Name(), x.n, err)
			}
			*x.dst = t
		}
	}
	if err := sfrt.SetRunValue(thread, defaultsKey, d); err != nil {
		return nil, fmt.Errorf("%s: %v", fn.Name(), err)
	}
	return starlark.None, nil
}
