package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
)

// The API's defences against the web (spec/api.md, "Security"). A server
// on loopback with no token is reachable by every web page the user's
// browser opens: a page cannot read the answers of a foreign origin, but
// it can send "simple" requests without asking first, and with DNS
// rebinding it can make its own name point at 127.0.0.1 and read them
// too. So, before anything else, every request must
//
//   - name this server in Host (its loopback names, the address it was
//     given, or a name configured with --allow-host): defeats DNS
//     rebinding, whose requests carry the attacker's name;
//   - come from this server's own origin or a configured one, if it
//     carries Origin (browsers always send it cross-origin);
//   - if it changes state (any method but GET, HEAD, OPTIONS), carry
//     Content-Type: application/json, which a page can only send
//     cross-origin after a CORS preflight that this server answers only
//     for configured origins.
//
// Then the bearer token, if there is one.

// hostErrorf is the 421 for a Host that does not name this server.
func (s *Server) hostError(host string) *APIError {
	return apiErr(http.StatusMisdirectedRequest, "misdirected_host",
		"this server does not answer to the host name %s (it answers to %s); behind a reverse proxy or under another name, allow the name the clients use with starflow serve --allow-host NAME, or server.allowed_hosts in the configuration file (spec/api.md, Security)",
		quoteHeader(host), strings.Join(s.ownHosts(), ", "))
}

// secure wraps the API handler in the checks above, answers CORS
// preflights for configured origins, and checks the token.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			s.refuse(w, r, s.hostError(r.Host))
			return
		}
		if len(s.opts.AllowedOrigins) > 0 {
			w.Header().Add("Vary", "Origin") // answers differ by origin
		}
		origins := r.Header.Values("Origin")
		cors := false
		if len(origins) > 0 {
			o := origins[0]
			switch ok, configured := s.originAllowed(o, r.Host); {
			case len(origins) > 1 || !ok:
				s.refuse(w, r, apiErr(http.StatusForbidden, "forbidden_origin",
					"requests from web pages at %s are refused: the API answers only its own origin and the origins configured with starflow serve --allow-origin ORIGIN, or server.allowed_origins in the configuration file (spec/api.md, Security)",
					quoteHeader(o)))
				return
			case configured:
				cors = true
				w.Header().Set("Access-Control-Allow-Origin", o)
			}
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !cors {
				s.refuse(w, r, apiErr(http.StatusForbidden, "forbidden_origin", "cross-origin requests are not enabled for this origin; configure it with starflow serve --allow-origin ORIGIN (spec/api.md, Security)"))
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if err := jsonContentType(r); err != nil {
				s.refuse(w, r, err)
				return
			}
		}
		if s.opts.Token != "" && !s.tokenOK(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="starflow"`)
			s.refuse(w, r, apiErr(http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token (send Authorization: Bearer TOKEN)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers a request the checks above refused, and logs it: a
// refusal is either a client to configure or a web page probing the API.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, ae *APIError) {
	s.log.Warn().Str("code", ae.Code).Str("method", clip(r.Method)).Str("path", clip(r.URL.Path)).
		Str("host", clip(r.Host)).Str("origin", clip(r.Header.Get("Origin"))).
		Msg("refused request")
	s.writeError(w, r, ae)
}

// jsonContentType refuses a state-changing request that does not say it
// is JSON, also when it has no body: a browser sends such a request
// cross-origin without a preflight.
func jsonContentType(r *http.Request) *APIError {
	cts := r.Header.Values("Content-Type")
	if len(cts) == 0 {
		return apiErr(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"%s requests must carry Content-Type: application/json, also with an empty body (web pages cannot send that header to another origin unasked)", r.Method)
	}
	mt, _, err := mime.ParseMediaType(cts[0])
	if len(cts) > 1 || err != nil || mt != "application/json" {
		return apiErr(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"%s requests must carry Content-Type: application/json, not %s", r.Method, quoteHeader(strings.Join(cts, ", ")))
	}
	return nil
}

// tokenOK checks an Authorization header against the token in constant
// time. The scheme is case-insensitive (RFC 9110, section 11.1).
func (s *Server) tokenOK(header string) bool {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tok = strings.TrimLeft(tok, " ")
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

// boundHostPort returns the host the server was told to listen on and the
// port it is bound to.
func (s *Server) boundHostPort() (host, port string) {
	host, port, _ = net.SplitHostPort(s.opts.Addr)
	if s.ln != nil {
		if _, p, err := net.SplitHostPort(s.ln.Addr().String()); err == nil {
			port = p
		}
	}
	return strings.ToLower(host), port
}

// ownHosts lists the Host values this server answers to, for messages.
func (s *Server) ownHosts() []string {
	host, port := s.boundHostPort()
	var out []string
	add := func(h string) {
		hp := net.JoinHostPort(h, port)
		for _, x := range out {
			if x == hp {
				return
			}
		}
		out = append(out, hp)
	}
	if loopback, _ := isLoopback(s.opts.Addr); loopback {
		add("127.0.0.1")
		add("localhost")
		add("::1")
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		out = append(out, "any IP address:"+port)
	} else if host != "" {
		add(host)
	}
	out = append(out, s.opts.AllowedHosts...)
	return out
}

// hostAllowed reports whether a request's Host names this server: a
// configured name (with any port, or the configured one), or, with the
// bound port, a loopback name when the server listens on loopback, the
// host it was told to listen on, or any IP address when it listens on
// all of them. A request naming an IP address cannot come from DNS
// rebinding, which needs a name the attacker controls.
func (s *Server) hostAllowed(hostport string) bool {
	hostport = strings.ToLower(hostport)
	if hostport == "" {
		return false
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), ""
	}
	for _, a := range s.opts.AllowedHosts {
		a = strings.ToLower(a)
		if ah, ap, err := net.SplitHostPort(a); err == nil {
			if ah == host && ap == port {
				return true
			}
		} else if strings.Trim(a, "[]") == host {
			return true
		}
	}
	bound, bport := s.boundHostPort()
	if port != bport {
		return false
	}
	if loopback, _ := isLoopback(s.opts.Addr); loopback && (host == "127.0.0.1" || host == "localhost" || host == "::1") {
		return true
	}
	if host == bound {
		return true
	}
	bip := net.ParseIP(bound)
	return bip != nil && bip.IsUnspecified() && net.ParseIP(host) != nil
}

// originAllowed reports whether a request's Origin may call the API, and
// whether that is because it is configured (and so gets CORS headers).
// The server's own origin (the Host it was reached under, which was
// checked, over http or, behind a TLS proxy, https) is allowed.
func (s *Server) originAllowed(origin, host string) (ok, configured bool) {
	o, err := normalizeOrigin(origin)
	if err != nil {
		return false, false
	}
	for _, a := range s.opts.AllowedOrigins {
		if n, err := normalizeOrigin(a); err == nil && n == o {
			return true, true
		}
	}
	host = strings.ToLower(host)
	return o == "http://"+host || o == "https://"+host || o == "http://"+strings.TrimSuffix(host, ":80") || o == "https://"+strings.TrimSuffix(host, ":443"), false
}

// normalizeOrigin returns an origin as browsers send it:
// scheme://host[:port], lower case, without a default port.
func normalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an origin (want scheme://host[:port], such as https://console.example.com)", o)
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if (scheme == "http" && strings.HasSuffix(host, ":80")) || (scheme == "https" && strings.HasSuffix(host, ":443")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return scheme + "://" + host, nil
}

// checkAllowedHost validates a configured host name: host or host:port,
// nothing else.
func checkAllowedHost(h string) error {
	bad := fmt.Errorf("allowed host %q: want a host name or address, optionally with :port (such as starflow.example.com or 10.0.0.5:8644), without scheme or path", h)
	if h == "" || strings.ContainsAny(h, "/?#@ *") {
		return bad
	}
	host := h
	if hh, p, err := net.SplitHostPort(h); err == nil {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return bad
		}
		host = hh
	}
	if strings.Trim(host, "[]") == "" {
		return bad
	}
	return nil
}

// inlineAllowed refuses code sent in a request unless the server was
// started to accept it: whoever can reach the API could otherwise run
// any script, with every secret the server declares.
func (s *Server) inlineAllowed(what string) error {
	if s.opts.AllowInlineSource {
		return nil
	}
	return apiErr(http.StatusForbidden, "inline_source_disabled",
		"this server does not run code sent in requests (%s); name a script file inside its script directory with \"script\", or start the server with --allow-inline-source (or server.allow_inline_source: true in the configuration file) if every client that can reach it may run any code (spec/api.md, Security)", what)
}

// quoteHeader quotes a header value for an error message, shortened.
func quoteHeader(v string) string { return fmt.Sprintf("%q", clip(v)) }

// clip shortens what a client sent for messages and logs.
func clip(v string) string {
	if len(v) > 100 {
		return v[:100] + "..."
	}
	return v
}

// checkSecurityOptions validates and normalizes the allowed hosts and
// origins.
func checkSecurityOptions(opts *Options) error {
	if opts.MaxBodyBytes > journal.MaxRecordBytes {
		return fmt.Errorf("the request body limit %d is larger than the journal's record limit %d", opts.MaxBodyBytes, journal.MaxRecordBytes)
	}
	for _, h := range opts.AllowedHosts {
		if err := checkAllowedHost(h); err != nil {
			return err
		}
	}
	opts.AllowedOrigins = append([]string(nil), opts.AllowedOrigins...)
	for i, o := range opts.AllowedOrigins {
		n, err := normalizeOrigin(o)
		if err != nil {
			return fmt.Errorf("allowed origin: %v", err)
		}
		opts.AllowedOrigins[i] = n
	}
	return nil
}

// readBody reads a request body of at most MaxBodyBytes: a body that says
// it is larger is refused before it is read, and one that is not UTF-8
// (JSON text must be, RFC 8259) is refused naming the first bad byte
// instead of being decoded with replacement characters.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > s.opts.MaxBodyBytes {
		return nil, tooLarge(s.opts.MaxBodyBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, err
		}
		return nil, apiErr(http.StatusBadRequest, "invalid_request", "could not read the request body: %v", err)
	}
	if !utf8.Valid(body) {
		off := value.InvalidUTF8(body)
		return nil, apiErr(http.StatusBadRequest, "invalid_request", "request body is not valid UTF-8: byte 0x%02x at offset %d (JSON text must be UTF-8)", body[off], off)
	}
	return body, nil
}

// tooLarge is the 413 for a body over the limit.
func tooLarge(limit int64) *APIError {
	return apiErr(http.StatusRequestEntityTooLarge, "too_large", "request body is larger than this server's limit of %d bytes (%s); starflow serve --max-body raises it, up to %d bytes", limit, sizeString(limit), journal.MaxRecordBytes)
}

// sizeString formats a byte count for messages: "1 MiB", "512 KiB", "300 bytes".
func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// MaxInputBytes bounds a run's input, also for the CLI (--input): it
// leaves the journal record that holds it (at most journal.MaxRecordBytes,
// with the script's manifest) room to spare. Large data is better passed
// by reference.
const MaxInputBytes = 8 << 20
