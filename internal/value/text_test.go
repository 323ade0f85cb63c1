package value

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"go.starlark.net/starlark"
)

// Plain JSON that is not text is refused at the offending byte instead of
// being decoded with U+FFFD in its place.
func TestFromJSONRefusesWhatIsNotText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"\"a\xffb\"", "offset 2: byte 0xff is not UTF-8"},
		{"{\"k\": [1, \"ok\", \"\xc3\"]}", "offset 17: byte 0xc3 is not UTF-8"},
		{"{\"\xfe\": 1}", "offset 2: byte 0xfe is not UTF-8"},
		{"\"esc\\n\xe2\x82\"", "offset 6: byte 0xe2 is not UTF-8"},
		{`"\ud800"`, `offset 1: \ud800 is half of a UTF-16 surrogate pair`},
		{`"x\udc00y"`, `offset 2: \udc00 is half of a UTF-16 surrogate pair`},
		{`"\ud800\u0041"`, `offset 1: \ud800 is half`},
		{`"\ud800\ud800"`, `offset 1: \ud800 is half`},
	} {
		_, err := FromJSON([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("FromJSON(%q) = %v, want %q", c.in, err, c.want)
		}
	}
	// Text, escapes and pairs are fine, and mean what encoding/json says.
	for _, in := range []string{`"h\u00e9llo"`, `"\ud83d\ude00"`, `"\\ud800"`, `"\\\ud83d\ude00"`, `"ü€😀"`, `"\ufffd"`, "\"\xef\xbf\xbd\""} {
		v, err := FromJSON([]byte(in))
		var want string
		json.Unmarshal([]byte(in), &want)
		if err != nil || string(v.(starlark.String)) != want {
			t.Errorf("FromJSON(%s) = %v, %v; want %q", in, v, err, want)
		}
	}
	// The journal form keeps decoding what it wrote (non-UTF-8 strings are
	// written as $str).
	enc, err := Encode(starlark.String("a\xffb"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Decode(enc); err != nil || v != starlark.String("a\xffb") {
		t.Fatalf("journal round trip: %v %v", v, err)
	}
}

// A result holding a string that is not UTF-8 is refused naming where it
// is, instead of being written with U+FFFD.
func TestToJSONRefusesWhatIsNotText(t *testing.T) {
	d := starlark.NewDict(1)
	d.SetKey(starlark.String("ok"), starlark.NewList([]starlark.Value{starlark.String("fine"), starlark.String("ab\xffc")}))
	_, err := ToJSON(d)
	if err == nil || !strings.Contains(err.Error(), `result["ok"][1]: the string is not valid UTF-8 (byte 0xff at offset 2 of 4)`) {
		t.Fatalf("ToJSON: %v", err)
	}
	k := starlark.NewDict(1)
	k.SetKey(starlark.String("k\xc3"), starlark.None)
	if _, err := ToJSON(k); err == nil || !strings.Contains(err.Error(), `result: the dict key "k\xc3" is not valid UTF-8 (byte 0xc3 at offset 1 of 2)`) {
		t.Fatalf("ToJSON key: %v", err)
	}
	if b, err := ToJSON(starlark.String("ü\ufffd")); err != nil || !utf8.Valid(b) {
		t.Fatalf("ToJSON text: %s %v", b, err)
	}
}
