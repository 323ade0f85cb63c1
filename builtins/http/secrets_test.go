package http_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sfhttp "github.com/starflow/starflow/builtins/http"
)

// Credentials the script uses; none may be written anywhere.
const (
	tokenValue     = "tok-9f8e7d6c5b4a-SECRETVALUE"
	cardValue      = "card-4242-4242-SECRETVALUE"
	plainAPIKey    = "plainkey-0a1b2c3d4e"
	plainToken     = "plaintoken-5e6f7a8b9c"
	plainPassword  = "plainpass-1234abcd"
	basicPassword  = "basicpw-77aa88bb99"
	publicMarker   = "public-body-marker-31337"
	publicQueryVal = "public-query-marker-4711"
)

// joined returns a Starlark expression that computes s from two halves, so
// that s itself appears in no script source (which the store keeps): the
// plain credentials below exist only at run time, as if a builtin had
// returned them.
func joined(s string) string {
	return fmt.Sprintf("(%q + %q)", s[:len(s)/2], s[len(s)/2:])
}

var secretsScript = `
def main(input):
    u = input["url"]
    common = dict(
        auth = http.bearer(secret("SF_HTTP_TOKEN")),
        headers = {"X-Api-Key": ` + joined(plainAPIKey) + `, "X-Public": "visible"},
        params = {"api_key": secret("SF_HTTP_CARD"), "access_token": ` + joined(plainToken) + `, "q": "` + publicQueryVal + `"},
        json = {"card": secret("SF_HTTP_CARD"), "password": ` + joined(plainPassword) + `, "note": "` + publicMarker + `"},
    )
    ok = http.post(u + "/echo", **common)
    bad = attempt(http.post, u + "/reject", **common)
    basic = http.get(u + "/echo?token=" + ` + joined(plainToken) + ` + "&page=2", auth = ("alice", ` + joined(basicPassword) + `))
    return {
        "echo": ok.body,
        "echo_json_auth": ok.json["authorization"],
        "error": bad.error,
        "basic": basic.body,
        "secret_str": str(secret("SF_HTTP_TOKEN")),
    }
`

func TestSecretsNeverReachJournalLogsOrErrors(t *testing.T) {
	t.Setenv("SF_HTTP_TOKEN", tokenValue)
	t.Setenv("SF_HTTP_CARD", cardValue)
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		// Echo everything back, as a careless or hostile server might.
		echo := map[string]any{"authorization": r.Header.Get("Authorization"), "x-api-key": r.Header.Get("X-Api-Key"),
			"query": r.URL.RawQuery, "body": "", "cookie-like": r.Header.Get("Authorization")}
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("Set-Cookie", "session=abc123def456; HttpOnly")
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/reject" {
			w.WriteHeader(401)
		}
		b, _ := json.Marshal(echo)
		w.Write(b)
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("s", secretsScript, input(srv.URL))

	// The server got the real credentials (the test is not vacuous).
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	r0 := reqs[0]
	if r0.Header.Get("Authorization") != "Bearer "+tokenValue || r0.Header.Get("X-Api-Key") != plainAPIKey ||
		!strings.Contains(r0.Query, "api_key="+cardValue) || !strings.Contains(r0.Query, "access_token="+plainToken) ||
		r0.Body != `{"card":"`+cardValue+`","password":"`+plainPassword+`","note":"`+publicMarker+`"}` {
		t.Fatalf("server saw %+v", r0)
	}
	wantBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+basicPassword))
	if reqs[2].Header.Get("Authorization") != wantBasic {
		t.Fatalf("basic auth %q", reqs[2].Header.Get("Authorization"))
	}

	// What the script got back is scrubbed.
	if res["echo_json_auth"] != "Bearer <secret SF_HTTP_TOKEN>" || res["secret_str"] != "<secret SF_HTTP_TOKEN>" {
		t.Fatalf("result %v", res)
	}
	if e := res["error"].(string); !strings.Contains(e, "401 Unauthorized") || !strings.Contains(e, "<secret SF_HTTP_TOKEN>") {
		t.Fatalf("error %q", e)
	}

	forbidden := []string{tokenValue, cardValue, plainAPIKey, plainToken, plainPassword, basicPassword,
		base64.StdEncoding.EncodeToString([]byte("alice:" + basicPassword)), "abc123def456"}
	check := func(where, text string) {
		t.Helper()
		for _, f := range forbidden {
			if strings.Contains(text, f) {
				t.Errorf("%s contains %q", where, f)
			}
		}
	}
	check("result", fmt.Sprint(res))
	check("logs", h.logs.String())
	if !strings.Contains(h.logs.String(), "http call failed") {
		t.Fatalf("the logs are not what this test thinks:\n%s", h.logs.String())
	}

	// The raw Badger files: every byte the store wrote (read while it is
	// open and uncompacted, so records are in plain text).
	seen := map[string]bool{}
	err := filepath.Walk(h.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		check("store file "+filepath.Base(path), string(b))
		for _, m := range []string{publicMarker, publicQueryVal, "SF_HTTP_TOKEN", "REDACTED"} {
			if strings.Contains(string(b), m) {
				seen[m] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Control: the scan sees the journal's plain text.
	for _, m := range []string{publicMarker, publicQueryVal, "SF_HTTP_TOKEN", "REDACTED"} {
		if !seen[m] {
			t.Fatalf("%q is in no store file: the scan cannot see the journal", m)
		}
	}
}

func TestRedactedArgumentsAreJournaled(t *testing.T) {
	t.Setenv("SF_HTTP_TOKEN", tokenValue)
	srv := newServer(t, statuses(200))
	h := newHarness(t, sfhttp.Options{Retry: fast})
	h.result("j", `
def main(input):
    http.get(input["url"] + "/x?api_key=" + `+joined(plainAPIKey)+` + "&page=2",
        headers = {"Authorization": "Token " + `+joined(plainToken)+`, "Cookie": "sid=" + `+joined(plainPassword)+`, "Accept": "text/plain"},
        params = {"client_secret": `+joined(plainPassword)+`, "n": 1},
        auth = http.auth("Token", secret("SF_HTTP_TOKEN")))
    return {}
`, input(srv.URL))
	recs, err := h.store.Records(bg, "j", 1)
	if err != nil {
		t.Fatal(err)
	}
	var args string
	for _, r := range recs {
		if strings.Contains(string(r.Data), `"builtin":"http.get"`) {
			args = string(r.Data)
			break
		}
	}
	for _, want := range []string{`api_key=REDACTED`, `page=2`, `"Authorization":"REDACTED"`, `"Cookie":"REDACTED"`,
		`"Accept":"text/plain"`, `"client_secret":"REDACTED"`, `"credentials":{"$secret":"SF_HTTP_TOKEN"}`, `"scheme":"Token"`} {
		if !strings.Contains(args, want) {
			t.Errorf("journaled call lacks %s:\n%s", want, args)
		}
	}
	for _, bad := range []string{plainAPIKey, plainToken, plainPassword, tokenValue} {
		if strings.Contains(args, bad) {
			t.Errorf("journaled call contains %s", bad)
		}
	}
	if d := h.details("j")["1"]; strings.Contains(d.URL, plainAPIKey) || strings.Contains(d.URL, plainPassword) || !strings.Contains(d.URL, "page=2") {
		t.Errorf("detail url %s", d.URL)
	}
}

func TestSecretCannotBeConcatenated(t *testing.T) {
	t.Setenv("SF_HTTP_TOKEN", tokenValue)
	h := newHarness(t, sfhttp.Options{})
	out := h.start("c", `
def main(input):
    return http.get("http://127.0.0.1:1/", headers = {"Authorization": "Bearer " + secret("SF_HTTP_TOKEN")})
`, nil)
	if out.Error == nil || !strings.Contains(out.Error.Message, "cannot be combined") {
		t.Fatalf("outcome %+v", out.Error)
	}
}

func TestMissingSecretFailsWithoutARequest(t *testing.T) {
	srv := newServer(t, statuses(200))
	h := newHarness(t, sfhttp.Options{})
	res := h.result("m", `
def main(input):
    r = attempt(http.get, input["url"], auth = http.bearer(secret("SF_HTTP_UNSET_FOR_TEST")))
    return {"kind": r.kind, "error": r.error}
`, input(srv.URL))
	if res["kind"] != "secret" || !strings.Contains(res["error"].(string), "SF_HTTP_UNSET_FOR_TEST") || srv.count() != 0 {
		t.Fatalf("result %v, %d requests", res, srv.count())
	}
}

// A server that echoes a credential in a response header's name (as
// "X-<token>") must not get it into the result, the journal or the logs:
// header names are scrubbed as values are, whatever their case (Go
// canonicalizes header names: "X-Tok-9f8e7d6c5b4a-Secretvalue").
func TestSecretEchoedInAHeaderNameIsScrubbed(t *testing.T) {
	t.Setenv("SF_HTTP_TOKEN", tokenValue)
	srv := newServer(t, func(n int, w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("X-"+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "seen")
		w.Header().Set("X-Key-"+r.Header.Get("X-Api-Key"), "seen")
		w.Header().Set("X-Public", "visible")
	})
	h := newHarness(t, sfhttp.Options{Retry: fast})
	res := h.result("hn", `
def main(input):
    r = http.get(input["url"], auth = http.bearer(secret("SF_HTTP_TOKEN")), headers = {"X-Api-Key": `+joined(plainAPIKey)+`})
    return {"headers": r.headers}
`, input(srv.URL))
	headers := res["headers"].(map[string]any)
	if headers["x-<secret SF_HTTP_TOKEN>"] != "seen" || headers["x-key-REDACTED"] != "seen" || headers["x-public"] != "visible" {
		t.Fatalf("headers %v", headers)
	}
	check := func(where, text string) {
		t.Helper()
		for _, f := range []string{tokenValue, plainAPIKey} {
			if strings.Contains(strings.ToLower(text), strings.ToLower(f)) {
				t.Errorf("%s contains %q", where, f)
			}
		}
	}
	check("result", fmt.Sprint(res))
	check("logs", h.logs.String())
	err := filepath.Walk(h.dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		check("store file "+filepath.Base(path), string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
