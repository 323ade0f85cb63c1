package builtins_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/internal/runtest"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

var bg = context.Background()

func send(e *runtest.Env, id, kind, name, val string) (bool, error) {
	d, err := e.RT.Send(bg, id, journal.Message{Kind: kind, Name: name, Value: json.RawMessage(val), From: "test"})
	if err != nil {
		return false, err
	}
	return d.Ends, nil
}

func TestAskHumanWaitsAndResumesWithTheAnswer(t *testing.T) {
	e := runtest.New(t)
	src := `
def main(input):
    draft = bump("draft")
    progress({"stage": "review"})
    decision = ask_human("Approve the refund?", choices = ["approve", "reject"])
    progress({"stage": "done", "decision": decision})
    return {"decision": decision, "draft": draft["n"]}
`
	out := e.Start("q", src, `null`)
	if out.Status != journal.StatusWaiting || out.Waiting.Builtin != "ask_human" || out.Waiting.Until != nil {
		t.Fatalf("%+v", out)
	}
	if !strings.Contains(string(out.Waiting.Data), `"prompt":"Approve the refund?"`) || !strings.Contains(string(out.Waiting.Data), `"choices":["approve","reject"]`) {
		t.Fatalf("waiting data %s", out.Waiting.Data)
	}
	if p, _ := e.RT.Progress(bg, "q"); string(p) != `{"stage":"review"}` {
		t.Fatalf("progress %s", p)
	}
	// A bad answer is refused, not stored; the run keeps waiting.
	_, err := send(e, "q", journal.MessageAnswer, "", `"maybe"`)
	if !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), `answer "maybe" is not one of the choices ["approve","reject"]`) {
		t.Fatalf("bad answer: %v", err)
	}
	if msgs, _ := e.Store.Inbox(bg, "q", 1); len(msgs) != 0 {
		t.Fatalf("bad answer stored: %v", msgs)
	}
	// Signals do not answer questions.
	if wake, err := send(e, "q", journal.MessageSignal, "other", `1`); err != nil || wake {
		t.Fatalf("signal: %v %v", wake, err)
	}
	wake, err := send(e, "q", journal.MessageAnswer, "", `"approve"`)
	if err != nil || !wake {
		t.Fatalf("answer: %v %v", wake, err)
	}
	out = e.Resume("q")
	runtest.MustResult(t, out, `{"decision": "approve", "draft": 1}`)
	if e.Count.Total() != 1 {
		t.Fatal("the draft step ran again")
	}
	meta, _ := e.Store.Run(bg, "q")
	if string(meta.Progress) != `{"stage":"done","decision":"approve"}` {
		t.Fatalf("stored progress %s", meta.Progress)
	}
	// The answer is journaled: a replay needs no inbox.
	e.Clone("q", "q2", 1000, "")
	runtest.MustResult(t, e.Resume("q2"), `{"decision": "approve", "draft": 1}`)
	// A finished run takes no messages.
	if _, err := send(e, "q", journal.MessageAnswer, "", `"approve"`); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("answer to a completed run: %v", err)
	}
}

func TestAskHumanSchemaAndTimeouts(t *testing.T) {
	// The clock is fake: every wait suspends, and the test moves time.
	e := runtest.New(t, func(o *runtime.Options) { o.MaxInlineWait = -1 })
	out := e.Start("s", `
def main(input):
    return ask_human("How many?", schema = {"type": "integer", "minimum": 1})
`, `null`)
	if out.Status != journal.StatusWaiting {
		t.Fatal(out.Status)
	}
	if _, err := send(e, "s", journal.MessageAnswer, "", `0`); err == nil || !strings.Contains(err.Error(), "does not match the schema") {
		t.Fatalf("schema: %v", err)
	}
	if _, err := send(e, "s", journal.MessageAnswer, "", `{"not": "json`); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("bad json: %v", err)
	}
	send(e, "s", journal.MessageAnswer, "", `3`)
	runtest.MustResult(t, e.Resume("s"), `3`)

	// Timeout with a default returns the default.
	out = e.Start("d", `
def main(input):
    return ask_human("Proceed?", timeout = "1h", default = "auto-approved")
`, `null`)
	if out.Status != journal.StatusWaiting || !out.Waiting.Until.Equal(e.Clock.Now().Add(time.Hour)) {
		t.Fatalf("%+v", out.Waiting)
	}
	e.Clock.Advance(30 * time.Minute)
	if out := e.Resume("d"); out.Status != journal.StatusWaiting {
		t.Fatal("gave up early")
	}
	e.Clock.Advance(31 * time.Minute)
	runtest.MustResult(t, e.Resume("d"), `"auto-approved"`)

	// Timeout without a default fails, and attempt() can route it.
	out = e.Start("n", `
def main(input):
    r = attempt(ask_human, "Proceed?", timeout = 60)
    return [r.ok, r.kind]
`, `null`)
	e.Clock.Advance(2 * time.Minute)
	runtest.MustResult(t, e.Resume("n"), `[false, "timeout"]`)

	// Bad arguments fail the call clearly.
	out = e.Start("bad", "def main(input):\n    return ask_human('x', schema = {'type': 12})\n", `null`)
	if out.Status != journal.StatusFailed || out.Error.Kind != "invalid_argument" || !strings.Contains(out.Error.Message, "ask_human: schema") {
		t.Fatalf("%+v %+v", out, out.Error)
	}
}

func TestSignalsBeforeAndAfterTheWait(t *testing.T) {
	e := runtest.New(t, func(o *runtime.Options) { o.MaxInlineWait = -1 })
	src := `
def main(input):
    ask_human("start?")
    first = wait_signal("go")
    second = wait_signal("go")
    third = wait_signal("go", timeout = "10m", default = "none")
    return [first, second, third]
`
	e.Start("g", src, `null`)
	// Two signals arrive while the run still waits on the question: kept in order.
	for _, v := range []string{`{"n": 1}`, `{"n": 2}`} {
		if wake, err := send(e, "g", journal.MessageSignal, "go", v); err != nil || wake {
			t.Fatalf("early signal: %v %v", wake, err)
		}
	}
	send(e, "g", journal.MessageAnswer, "", `true`)
	out := e.Resume("g")
	if out.Status != journal.StatusWaiting || out.Waiting.Builtin != "wait_signal" {
		t.Fatalf("%+v %v", out, out.Error)
	}
	e.Clock.Advance(11 * time.Minute)
	runtest.MustResult(t, e.Resume("g"), `[{"n": 1}, {"n": 2}, "none"]`)

	// A signal after the wait began wakes it.
	e.Start("h", "def main(input):\n    return wait_signal('done')\n", `null`)
	if _, err := send(e, "h", journal.MessageSignal, "bad name!", `1`); !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if wake, _ := send(e, "h", journal.MessageSignal, "other", `1`); wake {
		t.Fatal("another signal woke the run")
	}
	if wake, _ := send(e, "h", journal.MessageSignal, "done", `"yes"`); !wake {
		t.Fatal("the awaited signal did not wake the run")
	}
	runtest.MustResult(t, e.Resume("h"), `"yes"`)
	// Answers to a run that asks nothing are refused.
	e.Start("i", "def main(input):\n    return wait_signal('x')\n", `null`)
	if _, err := send(e, "i", journal.MessageAnswer, "", `1`); err == nil || !strings.Contains(err.Error(), "takes no answers") {
		t.Fatalf("answer to wait_signal: %v", err)
	}
}

// A short wait happens in-process, and a message wakes it at once.
func TestMessageWakesInProcessWait(t *testing.T) {
	e := runtest.New(t, func(o *runtime.Options) { o.Clock = time.Now })
	done := make(chan *runtime.Outcome)
	go func() {
		out, _ := e.RT.Start(bg, runtime.StartRequest{ID: "w", Script: "wf.star", Sources: map[string][]byte{"wf.star": []byte(
			"def main(input):\n    return ask_human('quick?', timeout = 30, default = 'timeout')\n")}})
		done <- out
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, _ := e.RT.Waiting(bg, "w")
		if w != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("run never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if wake, err := send(e, "w", journal.MessageAnswer, "", `"fast"`); err != nil || !wake {
		t.Fatalf("%v %v", wake, err)
	}
	// Had the answer not woken the wait, it would end after 30s with the
	// default.
	out := <-done
	runtest.MustResult(t, out, `"fast"`)
}
