package http_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	nethttp "net/http"
	"strings"
	"testing"

	sfhttp "github.com/starflow/starflow/builtins/http"
)

func TestResponseOverTheLimitFailsCleanly(t *testing.T) {
	big := strings.Repeat("x", 2048)
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		switch r.URL.Path {
		case "/length": // announced by Content-Length
			fmt.Fprint(w, big)
		case "/chunked": // streamed without a length
			for i := 0; i < 4; i++ {
				fmt.Fprint(w, big[:512])
				w.(nethttp.Flusher).Flush()
			}
		case "/fits":
			fmt.Fprint(w, big[:1024])
		}
	})
	h := newHarness(t, sfhttp.Options{Retry: fast, MaxResponseBytes: 1024})
	res := h.result("big", `
def main(input):
    out = {}
    for p in ["/length", "/chunked"]:
        r = attempt(http.get, input["url"] + p)
        out[p] = [r.kind, r.error]
    out["/fits"] = len(http.get(input["url"] + "/fits").body)
    return out
`, input(srv.URL))
	for _, p := range []string{"/length", "/chunked"} {
		r := res[p].([]any)
		if r[0] != "response_too_large" || !strings.Contains(r[1].(string), "larger than the limit of 1024 bytes (1 attempt)") {
			t.Fatalf("%s: %v", p, r)
		}
	}
	if res["/fits"] != 1024.0 {
		t.Fatalf("result %v", res)
	}
	if n := srv.count(); n != 3 {
		t.Fatalf("%d requests: an oversized response must not be retried", n)
	}
	// Nothing oversized was journaled.
	recs, _ := h.store.Records(bg, "big", 1)
	for _, r := range recs {
		if strings.Contains(string(r.Data), big[:1025]) {
			t.Fatalf("record %d holds the oversized body", r.Seq)
		}
	}
}

func TestLinkLocalAndMetadataAddressesAreRefused(t *testing.T) {
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("ll", `
def main(input):
    out = []
    for u in ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://[fe80::1]:8080/", "http://[::ffff:169.254.169.254]/"]:
        r = attempt(http.get, u)
        out.append([r.kind, r.error])
    return {"out": out}
`, nil)
	for _, r := range res["out"].([]any) {
		r := r.([]any)
		if r[0] != "blocked_host" || !strings.Contains(r[1].(string), "link-local or cloud metadata") {
			t.Fatalf("%v", r)
		}
	}
	if d := h.details("ll"); len(d) != 0 {
		// Refused before any attempt: there is nothing to detail.
		for _, x := range d {
			if len(x.Attempts) != 0 {
				t.Fatalf("detail %+v", x)
			}
		}
	}
}

// dnsServer answers every A query with ip and every other query with no
// records: a name that looks harmless and resolves to the metadata service.
func dnsServer(t *testing.T, answer func(name string) net.IP) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:n]
			if len(q) < 12 {
				continue
			}
			// Question: labels, then type and class.
			i := 12
			var labels []string
			for i < len(q) && q[i] != 0 {
				l := int(q[i])
				if i+1+l > len(q) {
					break
				}
				labels = append(labels, string(q[i+1:i+1+l]))
				i += 1 + l
			}
			if i+5 > len(q) {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[i+1:])
			question := q[12 : i+5]
			resp := make([]byte, 12, 64)
			copy(resp, q[:2])                            // ID
			binary.BigEndian.PutUint16(resp[2:], 0x8180) // response, recursion available, no error
			binary.BigEndian.PutUint16(resp[4:], 1)      // one question
			ip := answer(strings.Join(labels, "."))
			if qtype == 1 && ip != nil {
				binary.BigEndian.PutUint16(resp[6:], 1) // one answer
			}
			resp = append(resp, question...)
			if qtype == 1 && ip != nil {
				resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
				resp = append(resp, ip.To4()...)
			}
			pc.WriteTo(resp, addr)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

func TestDNSNameResolvingToMetadataIsRefusedAtDial(t *testing.T) {
	srv := newServer(t, statuses(200))
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resolver := dnsServer(t, func(name string) net.IP {
		if strings.HasPrefix(name, "good.") {
			return net.IPv4(127, 0, 0, 1)
		}
		return net.IPv4(169, 254, 169, 254)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast, Resolver: resolver})
	res := h.result("dns", `
def main(input):
    good = http.get("http://good.example.test:" + input["port"] + "/")
    evil = attempt(http.get, "http://metadata.example.test:" + input["port"] + "/latest/meta-data/")
    return {"good": good.status, "kind": evil.kind, "error": evil.error}
`, map[string]any{"port": port})
	// The resolver is really used (good.* reaches the loopback server) and
	// the evil name is refused on its resolved address, without a retry.
	if res["good"] != 200.0 || res["kind"] != "blocked_host" || !strings.Contains(res["error"].(string), "refusing to connect to 169.254.169.254") || !strings.Contains(res["error"].(string), "(1 attempt)") {
		t.Fatalf("result %v", res)
	}
}

func TestAllowHosts(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/away" {
			nethttp.Redirect(w, r, "http://127.0.0.2:1/elsewhere", nethttp.StatusFound)
		}
	})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	h := newHarness(t, sfhttp.Options{Retry: fast, AllowHosts: []string{"localhost", "*.internal.test", "127.0.0.1:" + port}})
	res := h.result("allow", `
def main(input):
    p = input["port"]
    return {
        "localhost": http.get("http://localhost:" + p + "/").status,
        "hostport": http.get("http://127.0.0.1:" + p + "/").status,
        "other": attempt(http.get, "http://127.0.0.3:" + p + "/").kind,
        "redirect": attempt(http.get, "http://127.0.0.1:" + p + "/away").error,
    }
`, map[string]any{"port": port})
	if res["localhost"] != 200.0 || res["hostport"] != 200.0 || res["other"] != "blocked_host" ||
		!strings.Contains(res["redirect"].(string), "host 127.0.0.2:1 is not in the allowed hosts") {
		t.Fatalf("result %v", res)
	}
}

func TestRedirectToAnotherHostDropsCredentials(t *testing.T) {
	target := newServer(t, statuses(200))
	origin := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/same" {
			nethttp.Redirect(w, r, "/landed", nethttp.StatusFound)
			return
		}
		if r.URL.Path == "/away" {
			nethttp.Redirect(w, r, target.URL+"/landed", nethttp.StatusTemporaryRedirect)
		}
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	h.result("redir", `
def main(input):
    kw = dict(auth = http.bearer("t0ken-value"), headers = {"X-Api-Key": "k3y-value", "X-Trace": "t"})
    http.get(input["origin"] + "/same", **kw)
    http.get(input["origin"] + "/away", **kw)
    return {}
`, map[string]any{"origin": origin.URL})
	var landed request
	for _, r := range origin.requests() {
		if r.Path == "/landed" {
			landed = r
		}
	}
	if landed.Header.Get("X-Api-Key") != "k3y-value" || landed.Header.Get("Authorization") != "Bearer t0ken-value" {
		t.Fatalf("same-host redirect lost headers: %v", landed.Header)
	}
	got := target.requests()
	if len(got) != 1 || got[0].Header.Get("X-Api-Key") != "" || got[0].Header.Get("Authorization") != "" || got[0].Header.Get("X-Trace") != "t" {
		t.Fatalf("cross-host redirect: %+v", got)
	}
}

// A redirect to a scheme other than http or https is refused at once: it
// is not a connection failure worth retrying.
func TestRedirectToAnotherSchemeIsRefused(t *testing.T) {
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Location", r.URL.Query().Get("to"))
		w.WriteHeader(nethttp.StatusFound)
	})
	h := newHarness(t, sfhttp.Options{})
	res := h.result("scheme", `
def main(input):
    out = []
    for to in ["file:///etc/passwd", "gopher://127.0.0.1:70/1x?token=t0ps3cret"]:
        r = attempt(http.get, input["url"] + "/go", params = {"to": to})
        out.append([r.kind, r.error])
    return {"out": out}
`, input(srv.URL))
	for i, r := range res["out"].([]any) {
		r := r.([]any)
		msg := r[1].(string)
		scheme := []string{"file", "gopher"}[i]
		if r[0] != "redirect" || !strings.Contains(msg, "refusing to follow a redirect to a "+scheme+":// URL") || !strings.Contains(msg, "(1 attempt)") {
			t.Fatalf("%v", r)
		}
		if scheme == "gopher" && !strings.Contains(msg, "(gopher://127.0.0.1:70/1x?token=REDACTED)") {
			t.Fatalf("the location is not shown redacted: %s", msg)
		}
	}
	if n := srv.count(); n != 2 {
		t.Fatalf("%d requests, want one per call", n)
	}
	if w := h.waited(); w != 0 {
		t.Fatalf("waited %s to retry", w)
	}
}
