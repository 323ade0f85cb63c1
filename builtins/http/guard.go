package http

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"

	sfrt "github.com/starflow/starflow/runtime"
)

// blockedError is a request the guards refused.
type blockedError struct{ msg string }

func (e *blockedError) Error() string { return e.msg }

func blocked(format string, args ...any) *sfrt.Error {
	err := &blockedError{fmt.Sprintf(format, args...)}
	return &sfrt.Error{Kind: "blocked_host", Message: err.msg, Err: err}
}

// hostPattern is one AllowHosts entry.
type hostPattern struct {
	host   string // exact host, or host:port when port is set
	port   bool
	suffix string // ".example.com" for "*.example.com"
}

func parseAllowHosts(list []string) ([]hostPattern, error) {
	var out []hostPattern
	for _, h := range list {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
			return nil, fmt.Errorf("http: AllowHosts has an empty entry")
		case strings.HasPrefix(h, "*."):
			out = append(out, hostPattern{suffix: h[1:]})
		case strings.ContainsAny(h, "/*?@"):
			return nil, fmt.Errorf("http: AllowHosts entry %q is not a host, host:port or *.domain", h)
		default:
			_, _, err := net.SplitHostPort(h)
			out = append(out, hostPattern{host: strings.Trim(h, "[]"), port: err == nil})
		}
	}
	return out, nil
}

func (m *Module) hostAllowed(u *url.URL) bool {
	if len(m.allow) == 0 {
		return true
	}
	host := strings.ToLower(u.Hostname())
	hostPort := strings.ToLower(u.Host)
	for _, p := range m.allow {
		switch {
		case p.suffix != "":
			if strings.HasSuffix(host, p.suffix) {
				return true
			}
		case p.port:
			if hostPort == p.host {
				return true
			}
		case host == p.host:
			return true
		}
	}
	return false
}

// checkURL applies the guards that need no connection: the allow-list,
// and the link-local check for hosts written as IP addresses.
func (m *Module) checkURL(u *url.URL) error {
	if !m.hostAllowed(u) {
		return blocked("host %s is not in the allowed hosts", u.Host)
	}
	if !m.opts.AllowLinkLocal {
		if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && blockedAddr(a) {
			return blocked("refusing to call %s: a link-local or cloud metadata address (set Options.AllowLinkLocal to allow)", a)
		}
	}
	return nil
}

var (
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud metadata
	}
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// blockedAddr reports whether connecting to a is refused by default:
// link-local addresses (169.254.0.0/16, where cloud metadata services
// live, and fe80::/10) and other metadata addresses, in any IPv6 disguise.
func blockedAddr(a netip.Addr) bool {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:16]))
	}
	return a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || slices.Contains(metadataAddrs, a)
}

// dialControl runs for every connection the default dialer makes, with
// the address DNS resolved to, before connecting.
func (m *Module) dialControl(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	if a, err := netip.ParseAddr(host); err == nil && blockedAddr(a) {
		return &blockedError{fmt.Sprintf("refusing to connect to %s: a link-local or cloud metadata address (set Options.AllowLinkLocal to allow)", a)}
	}
	return nil
}

// checkedDial wraps a dial function we do not control (from
// Options.Transport): it checks the address the connection reached.
func (m *Module) checkedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if m.opts.AllowLinkLocal {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
			if err := m.dialControl(network, ta.String(), nil); err != nil {
				conn.Close()
				return nil, err
			}
		}
		return conn, nil
	}
}
