package http

import (
	"encoding/base64"
	"errors"
	"net/url"
	"sort"
	"strings"
	"unicode"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// redacted replaces credentials given as plain strings. It needs no
// escaping in JSON, URLs or logs.
const redacted = "REDACTED"

// Words that make a header, parameter or field name a credential's name.
// strongWords count anywhere in the name ("accesstoken"), weakWords only as
// a whole word ("api_key", "X-Auth-Token", but not "monkey" or "author").
var (
	strongWords = []string{"token", "secret", "password", "passwd", "apikey", "credential", "signature", "cookie", "session", "authorization", "privatekey"}
	weakWords   = map[string]bool{"key": true, "auth": true, "pass": true, "pwd": true, "sig": true, "jwt": true, "bearer": true, "otp": true}
	// notSensitive are names that match the rules but carry no credential.
	notSensitive = map[string]bool{"idempotencykey": true}
)

// sensitiveName reports whether a parameter or field name looks like it
// holds a credential: api_key, apiKey, access_token, client_secret,
// password, X-Api-Key, X-Auth-Token, signature, ...
func sensitiveName(name string) bool {
	words := splitWords(name)
	joined := strings.Join(words, "")
	if notSensitive[joined] {
		return false
	}
	for _, w := range words {
		if weakWords[w] {
			return true
		}
	}
	for _, s := range strongWords {
		if strings.Contains(joined, s) {
			return true
		}
	}
	return false
}

// sensitiveHeader reports whether a request header carries credentials.
func sensitiveHeader(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key":
		return true
	}
	return sensitiveName(name)
}

// splitWords splits a name into lower-case words at punctuation and at
// lower-to-upper case changes: "X-Api-Key" and "apiKey" give [x api key]
// and [api key].
func splitWords(name string) []string {
	var words []string
	var cur []rune
	var prev rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r) && (unicode.IsLower(prev) || unicode.IsDigit(prev)):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
		prev = r
	}
	flush()
	return words
}

// redactURL replaces the password and sensitive query parameters of a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Cannot tell the parts apart: keep only what precedes the query.
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i] + "?" + redacted
		}
		if i := strings.Index(raw, "@"); i >= 0 {
			raw = redacted + raw[i:]
		}
		return raw
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
			changed = true
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			if sensitiveName(k) {
				for i := range vs {
					vs[i] = redacted
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return raw
	}
	return u.String()
}

func scrubURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed url"
}

// redactArgs returns the Builtin.Redact function for the http builtins:
// the URL (positional argument urlIndex, or url=) loses its password and
// sensitive query parameters; in headers, params, json, body and auth,
// plain strings under credential-like names become "REDACTED". Secrets
// are journaled by name and stay as they are.
func redactArgs(urlIndex int) func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
	return func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
		outArgs := args
		if len(args) > urlIndex {
			if s, ok := args[urlIndex].(starlark.String); ok {
				if r := redactURL(string(s)); r != string(s) {
					outArgs = append(starlark.Tuple(nil), args...)
					outArgs[urlIndex] = starlark.String(r)
				}
			}
		}
		outKw, copied := kwargs, false
		for i, kv := range kwargs {
			name, _ := starlark.AsString(kv[0])
			var nv starlark.Value
			changed := false
			switch name {
			case "url":
				if s, ok := kv[1].(starlark.String); ok {
					if r := redactURL(string(s)); r != string(s) {
						nv, changed = starlark.String(r), true
					}
				}
			case "headers":
				nv, changed = redactTree(kv[1], false, true, 0)
			case "params", "json", "body":
				nv, changed = redactTree(kv[1], false, false, 0)
			case "auth":
				nv, changed = redactTree(kv[1], true, false, 0)
			}
			if changed {
				if !copied {
					outKw = append([]starlark.Tuple(nil), kwargs...)
					copied = true
				}
				outKw[i] = starlark.Tuple{kv[0], nv}
			}
		}
		return outArgs, outKw
	}
}

// redactTree returns v with plain strings under credential names replaced
// (all of them if sensitive), and whether anything changed. headers says
// that dict keys are header names. v itself is never modified.
func redactTree(v starlark.Value, sensitive, headers bool, depth int) (starlark.Value, bool) {
	if depth > 100 {
		return v, false
	}
	switch x := v.(type) {
	case starlark.String, starlark.Bytes:
		if sensitive {
			return starlark.String(redacted), true
		}
	case *starlark.List:
		elems := make([]starlark.Value, x.Len())
		changed := false
		for i := range elems {
			var c bool
			elems[i], c = redactTree(x.Index(i), sensitive, headers, depth+1)
			changed = changed || c
		}
		if changed {
			return starlark.NewList(elems), true
		}
	case starlark.Tuple:
		out := make(starlark.Tuple, len(x))
		changed := false
		for i, e := range x {
			var c bool
			out[i], c = redactTree(e, sensitive, headers, depth+1)
			changed = changed || c
		}
		if changed {
			return out, true
		}
	case *starlark.Dict:
		items := x.Items()
		changed := false
		for _, kv := range items {
			k, _ := starlark.AsString(kv[0])
			s := sensitive || (headers && sensitiveHeader(k)) || (!headers && sensitiveName(k))
			if nv, c := redactTree(kv[1], s, false, depth+1); c {
				kv[1] = nv
				changed = true
			}
		}
		if changed {
			d := starlark.NewDict(len(items))
			for _, kv := range items {
				_ = d.SetKey(kv[0], kv[1])
			}
			return d, true
		}
	case *starlarkstruct.Struct:
		_, isAuth := authStruct(x)
		sd := starlark.StringDict{}
		x.ToStringDict(sd)
		changed := false
		for k, fv := range sd {
			s := sensitive || sensitiveName(k)
			if isAuth {
				s = k != "scheme" && k != "user"
			}
			if nv, c := redactTree(fv, s, false, depth+1); c {
				sd[k] = nv
				changed = true
			}
		}
		if changed {
			return starlarkstruct.FromStringDict(x.Constructor(), sd), true
		}
	}
	return v, false
}

// scrubber replaces credential values that were sent with a call wherever
// they could come back: response bodies and headers (a server that echoes
// the request), error messages, logs.
type scrubber struct{ pairs [][2]string }

// minScrub is the shortest value scrubbed: replacing every "a" in a
// response would destroy it and protect nothing.
const minScrub = 4

func (s *scrubber) add(v, label string) {
	if len(v) < minScrub {
		return
	}
	forms := []string{v, url.QueryEscape(v), url.PathEscape(v), strings.Trim(jsonString(v), `"`), base64.StdEncoding.EncodeToString([]byte(v))}
	for _, f := range forms {
		dup := false
		for _, p := range s.pairs {
			if p[0] == f {
				dup = true
				break
			}
		}
		if !dup {
			s.pairs = append(s.pairs, [2]string{f, label})
		}
	}
	// Longest first, so that a value containing another is replaced whole.
	sort.SliceStable(s.pairs, func(i, j int) bool { return len(s.pairs[i][0]) > len(s.pairs[j][0]) })
}

func (s *scrubber) str(x string) string {
	if s == nil {
		return x
	}
	for _, p := range s.pairs {
		if strings.Contains(x, p[0]) {
			x = strings.ReplaceAll(x, p[0], p[1])
		}
	}
	return x
}

// name scrubs a lower-case header name. The credentials are matched
// whatever their case: header names reach us canonicalized
// ("X-Tok-Abc"), and are shown lower-cased.
func (s *scrubber) name(lower string) string {
	if s == nil {
		return lower
	}
	for _, p := range s.pairs {
		if f := strings.ToLower(p[0]); strings.Contains(lower, f) {
			lower = strings.ReplaceAll(lower, f, p[1])
		}
	}
	return lower
}

func (s *scrubber) bytes(b []byte) []byte {
	if s == nil || len(s.pairs) == 0 {
		return b
	}
	return []byte(s.str(string(b)))
}
