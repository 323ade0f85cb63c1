package http_test

import (
	"fmt"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	sfhttp "github.com/starflow/starflow/builtins/http"
	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// suspendAtSleep makes sleep() suspend the run, so that the rest of the
// script runs again, replaying what came before, when the test resumes it.
func suspendAtSleep(o *runtime.Options) { o.MaxInlineWait = -1 }

// callRecord returns the payload of the call.completed record of a step.
func callRecord(t *testing.T, h *harness, id, step string) []byte {
	t.Helper()
	recs, err := h.store.Records(bg, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type != journal.TypeCallCompleted {
			continue
		}
		var cc journal.CallCompleted
		if err := r.Decode(&cc); err != nil {
			t.Fatal(err)
		}
		if cc.Step == step {
			return r.Data
		}
	}
	t.Fatalf("no call.completed for step %s", step)
	return nil
}

// A JSON response just under the 10 MiB limit is journaled with its body
// once (its parsed form refers to the body) and replays as it was live.
func TestLargeJSONResponseIsJournaledOnce(t *testing.T) {
	largeData(t)
	var b strings.Builder
	b.WriteString(`{"items": [`)
	n := 0
	for b.Len() < sfhttp.DefaultMaxResponseBytes-200 {
		if n > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"id": %d, "name": "item-%07d", "tags": ["a", "b"], "price": %d.5}`, n, n, n%1000)
		n++
	}
	b.WriteString(`], "end": true}`)
	body := b.String()
	srv := newServer(t, func(_ int, w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	})
	h := newHarness(t, sfhttp.Options{}, suspendAtSleep)
	src := `
def main(input):
    r = http.get(input["url"])
    sleep("1h")
    items = r.json["items"]
    ids = 0
    for it in items:
        ids += it["id"]
    return {"n": len(items), "last": items[-1], "ids": ids, "body": len(r.body), "end": r.json["end"]}
`
	out := h.start("big", src, input(srv.URL))
	if out.Status != journal.StatusWaiting {
		t.Fatalf("status %s, error %+v; want waiting in sleep()", out.Status, out.Error)
	}
	rec := callRecord(t, h, "big", "1")
	if !strings.Contains(string(rec), `"json":{"$json":"body"}`) || len(rec) > len(body)*13/10 {
		t.Fatalf("the call's record takes %d bytes for a %d-byte body; want the body once and the json as a reference", len(rec), len(body))
	}
	h.clock.Advance(time.Hour)
	// The replay decodes the response from the journal: the body parsed
	// in its order, ints and floats as written, as the live call saw it.
	out = h.resume("big")
	want := fmt.Sprintf(`{"n": %d, "last": {"id": %d, "name": "item-%07d", "tags": ["a", "b"], "price": %d.5}, "ids": %d, "body": %d, "end": true}`,
		n, n-1, n-1, (n-1)%1000, n*(n-1)/2, len(body))
	runtest.MustResult(t, out, want)
	if c := srv.count(); c != 1 {
		t.Fatalf("%d requests, want 1", c)
	}
}

// A response whose journal form would not fit in a journal record fails
// the call with an error of its own kind, journaled as a small failure:
// the run goes on, and resuming it sends nothing again.
func TestResponseTooLargeForTheJournalFailsCleanly(t *testing.T) {
	largeData(t)
	// Control characters take 6 bytes each in the journal ("\u0001"): a
	// 12 MiB body would take 72 MiB there.
	body := strings.Repeat("\x01", 12<<20)
	srv := newServer(t, func(_ int, w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	})
	h := newHarness(t, sfhttp.Options{MaxResponseBytes: 16 << 20}, suspendAtSleep)
	src := `
def main(input):
    r = attempt(http.post, input["url"], json = {"order": 1})
    sleep("1h")
    return {"ok": r.ok, "kind": r.kind, "error": r.error}
`
	out := h.start("huge", src, input(srv.URL))
	if out.Status != journal.StatusWaiting {
		t.Fatalf("status %s, error %+v; want waiting in sleep() after the call failed", out.Status, out.Error)
	}
	if rec := callRecord(t, h, "huge", "1"); len(rec) > 64<<10 {
		t.Fatalf("the failure takes %d bytes in the journal", len(rec))
	}
	h.clock.Advance(time.Hour)
	out = h.resume("huge")
	if out.Status != journal.StatusCompleted {
		t.Fatalf("status %s, error %+v", out.Status, out.Error)
	}
	res := runtest.ResultObject(t, out)
	msg, _ := res["error"].(string)
	if res["ok"] != false || res["kind"] != "too_large_for_journal" || !strings.Contains(msg, fmt.Sprint(len(body))) ||
		!strings.Contains(msg, fmt.Sprint(journal.MaxRecordBytes)) {
		t.Fatalf("result %v", res)
	}
	if c := srv.count(); c != 1 {
		t.Fatalf("%d requests, want 1", c)
	}
}

// Arguments that would not fit in a journal record are refused before
// anything is sent; the call is journaled with the oversized argument
// summarized.
func TestRequestTooLargeForTheJournalIsNotSent(t *testing.T) {
	largeData(t)
	srv := newServer(t, statuses(200))
	h := newHarness(t, sfhttp.Options{})
	res := h.result("req", `
def main(input):
    r = attempt(http.post, input["url"], body = "\x01" * (12 << 20), headers = {"X-Trace": "t"})
    return {"ok": r.ok, "kind": r.kind, "error": r.error}
`, input(srv.URL))
	msg, _ := res["error"].(string)
	if res["ok"] != false || res["kind"] != "too_large_for_journal" || !strings.Contains(msg, "not sent") ||
		!strings.Contains(msg, fmt.Sprint(journal.MaxRecordBytes)) {
		t.Fatalf("result %v", res)
	}
	if c := srv.count(); c != 0 {
		t.Fatalf("%d requests, want none", c)
	}
	recs, err := h.store.Records(bg, "req", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type == journal.TypeCallStarted && (len(r.Data) > 64<<10 || !strings.Contains(string(r.Data), `"X-Trace":"t"`)) {
			t.Fatalf("call.started takes %d bytes: %.300s", len(r.Data), r.Data)
		}
	}
}

func TestMaxResponseBytesIsBoundedByTheJournal(t *testing.T) {
	if _, err := sfhttp.New(sfhttp.Options{MaxResponseBytes: journal.MaxRecordBytes + 1}); err == nil || !strings.Contains(err.Error(), "MaxRecordBytes") {
		t.Fatalf("New: %v", err)
	}
	if _, err := sfhttp.New(sfhttp.Options{MaxResponseBytes: journal.MaxRecordBytes / 2}); err != nil {
		t.Fatalf("New: %v", err)
	}
}
