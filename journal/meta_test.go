package journal

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunEnvelope(t *testing.T) {
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := &Run{ID: "r1", Status: StatusWaiting, ScriptHash: "sha256:abc", CreatedAt: at, UpdatedAt: at}
	b, err := EncodeRun(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRun("r1", b)
	if err != nil || got.ScriptHash != r.ScriptHash || got.Status != r.Status || !got.UpdatedAt.Equal(at) {
		t.Fatalf("DecodeRun = %+v, %v", got, err)
	}
	// Every single-byte flip is detected.
	for i := range b {
		d := append([]byte(nil), b...)
		d[i] ^= 0x20
		_, err := DecodeRun("r1", d)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.RunID != "r1" || ce.Seq != 0 {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}
	// Metadata is not a record, and a record is not metadata.
	if _, err := DecodeRecord("r1", 1, b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeRecord accepted metadata: %v", err)
	}
	if _, err := DecodeRun("r1", Encode(Record{Type: TypeLog, Data: []byte(`{"id":"r1"}`)})); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DecodeRun accepted a record: %v", err)
	}
	// Metadata of another run is corrupt.
	if _, err := DecodeRun("r2", b); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"r1"`) {
		t.Fatalf("DecodeRun(r2) = %v", err)
	}
}

func TestRunLegacyJSON(t *testing.T) {
	got, err := DecodeRun("old", []byte(`{"id":"old","status":"completed","result":42}`))
	if err != nil || got.Status != StatusCompleted || string(got.Result) != "42" {
		t.Fatalf("legacy metadata: %+v, %v", got, err)
	}
	if _, err := DecodeRun("old", []byte(`{"id":"old","status":`)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("broken legacy metadata: %v", err)
	}
}

func TestCorruptErrorMessages(t *testing.T) {
	for _, c := range []struct {
		err  *CorruptError
		want string
	}{
		{&CorruptError{RunID: "r", Seq: 3, Reason: "x"}, "journal record 3 of run r is corrupt: x"},
		{&CorruptError{RunID: "r", Reason: "metadata: x"}, "run r is corrupt: metadata: x"},
		{&CorruptError{Store: "/db", Reason: "x"}, "the store /db is corrupt: x"},
	} {
		if !strings.HasPrefix(c.err.Error(), c.want) {
			t.Errorf("%q does not start with %q", c.err.Error(), c.want)
		}
	}
	e := &CorruptRunsError{Runs: []*CorruptError{{RunID: "a", Reason: "metadata: x"}, {RunID: "b", Seq: 1, Reason: "y"}}}
	var ce *CorruptError
	if !errors.Is(e, ErrCorrupt) || !errors.As(e, &ce) || ce.RunID != "a" || !strings.Contains(e.Error(), "b (record 1: y)") {
		t.Fatalf("CorruptRunsError: %v", e)
	}
}
