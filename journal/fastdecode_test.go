package journal

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The fast decoders agree with encoding/json on every field.
func TestFastDecodeMatchesEncodingJSON(t *testing.T) {
	starts := []CallStarted{
		{Step: "1", Builtin: "now", Args: json.RawMessage(`[]`), Digest: "abc", Key: "r/1", Pos: "wf.star:2:9"},
		{Step: "5.1.2", Builtin: "http.post", Args: json.RawMessage(`["https://x/\"q\"",{"json":{"a":[1,{"b":"}"}]}}]`), Digest: "d", Key: "run-1/5.1.2", Pos: "dir/wf \"x\".star:10:3"},
		{Step: "2", Builtin: "é\u2028\n\ttab"},
	}
	for _, cs := range starts {
		rec, err := NewRecord(2, TypeCallStarted, time.Now(), cs)
		if err != nil {
			t.Fatal(err)
		}
		var want CallStarted
		json.Unmarshal(rec.Data, &want)
		got, err := rec.DecodeCallStarted()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeCallStarted(%s) = %+v, %v; want %+v", rec.Data, got, err, want)
		}
	}
	completes := []CallCompleted{
		{Step: "1", Result: json.RawMessage(`{"$time":"2026-11-27T12:00:00Z"}`), Duration: 1234},
		{Step: "3", Error: &CallError{Kind: "http_status", Message: "404 \"Not Found\""}, Attempts: []Attempt{{N: 1, Error: "x", Wait: time.Second}, {N: 2}}, Detail: json.RawMessage(`{"a":[1,2]}`), Duration: -5},
		{Step: "4", Result: json.RawMessage(`null`)},
	}
	for _, cc := range completes {
		rec, _ := NewRecord(3, TypeCallCompleted, time.Now(), cc)
		var want CallCompleted
		json.Unmarshal(rec.Data, &want)
		got, err := rec.DecodeCallCompleted()
		if err != nil {
			t.Fatal(err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Fatalf("DecodeCallCompleted:\n got %s\nwant %s", gb, wb)
		}
	}
	for _, bad := range []string{``, `[]`, `{"step":}`, `{"step":"1"`, `{"step":1}`, `{"step":"1" "x":2}`} {
		if _, err := (Record{Type: TypeCallStarted, Data: []byte(bad)}).DecodeCallStarted(); err == nil {
			t.Errorf("DecodeCallStarted(%q) succeeded", bad)
		}
	}
}

func FuzzEachField(f *testing.F) {
	f.Add([]byte(`{"step":"1","args":[1,{"a":"}"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		eachField(data, func(key string, val []byte) error { return nil })
	})
}
