package http

import (
	"net/netip"
	"testing"
)

func TestBudgetBucket(t *testing.T) {
	b := newBudgets(Budget{Capacity: 12, RetryCost: 5, TimeoutCost: 10, Refund: 1})
	if !b.take("H:1", 5) || !b.take("h:1", 5) || b.take("h:1", 5) {
		t.Fatal("12 tokens pay for two retries of 5, not three")
	}
	if !b.take("other:1", 10) {
		t.Fatal("buckets are per host")
	}
	b.refund("h:1", 3)
	if got := b.available("h:1"); got != 5 {
		t.Fatalf("available %d, want 5", got)
	}
	b.refund("h:1", 100)
	if got := b.available("h:1"); got != 12 || len(b.spent) != 1 {
		t.Fatalf("refund beyond capacity: available %d, %d entries", got, len(b.spent))
	}
	off := newBudgets(Budget{Capacity: -1, RetryCost: 5})
	for i := 0; i < 1000; i++ {
		if !off.take("h", 5) {
			t.Fatal("a disabled budget refused")
		}
	}
}

func TestSensitiveNames(t *testing.T) {
	for _, n := range []string{"api_key", "apiKey", "APIKEY", "key", "X-Api-Key", "x-goog-api-key", "access_token", "refresh_token",
		"client_secret", "password", "passwd", "X-Auth-Token", "Authorization", "Proxy-Authorization", "Cookie", "session_id",
		"sig", "X-Amz-Signature", "private_key", "jwt", "otp", "accessToken", "X-CSRF-Token"} {
		if !sensitiveName(n) && !sensitiveHeader(n) {
			t.Errorf("%s is not treated as a credential", n)
		}
	}
	for _, n := range []string{"q", "page", "author", "monkey", "keyboard_layout", "Idempotency-Key", "Accept", "Content-Type", "X-Request-Id", "passenger"} {
		if sensitiveName(n) {
			t.Errorf("%s is treated as a credential", n)
		}
	}
}

func TestBlockedAddresses(t *testing.T) {
	for _, a := range []string{"169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "100.100.100.200", "ff02::1"} {
		if !blockedAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s is allowed", a)
		}
	}
	for _, a := range []string{"127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "8.8.8.8", "fd00::1", "100.64.0.1"} {
		if blockedAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s is refused", a)
		}
	}
	m := &Module{}
	if err := m.dialControl("tcp4", "169.254.169.254:80", nil); err == nil {
		t.Error("dial to the metadata address allowed")
	}
	if err := m.dialControl("tcp6", "[::1]:80", nil); err != nil {
		t.Errorf("loopback refused: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.test/v1?key=abc&page=2":          "https://api.test/v1?key=REDACTED&page=2",
		"https://u:pw@api.test/x":                     "https://u:REDACTED@api.test/x",
		"https://api.test/x?q=1":                      "https://api.test/x?q=1",
		"https://api.test/x?Signature=s&X-Amz-Date=d": "https://api.test/x?Signature=REDACTED&X-Amz-Date=d",
		"http://[bad":                                 "http://[bad",
		"http://[bad?token=t":                         "http://[bad?REDACTED",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScrubber(t *testing.T) {
	s := &scrubber{}
	s.add("s3cr3t+value/x", "<secret S>")
	s.add("abc", "<secret SHORT>") // too short to scrub
	got := s.str(`raw s3cr3t+value/x query s3cr3t%2Bvalue%2Fx json "s3cr3t+value/x" b64 czNjcjN0K3ZhbHVlL3g= abc`)
	want := `raw <secret S> query <secret S> json "<secret S>" b64 <secret S> abc`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Header names come canonicalized and are shown lower-cased.
	if got := s.name("x-echo-s3cr3t+value/x"); got != "x-echo-<secret S>" {
		t.Fatalf("header name scrubbed to %s", got)
	}
}
