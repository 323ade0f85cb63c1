package value

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FromJSON accepts exactly the JSON texts encoding/json accepts, minus
// those that are not text (bytes that are not UTF-8, escapes of half a
// surrogate pair) and those nested deeper than 1000 levels; what it
// accepts, ToJSON writes back as valid UTF-8 JSON meaning the same thing.
// The seeds run in every go test; go test -fuzz FuzzFromJSON explores.
func FuzzFromJSON(f *testing.F) {
	for _, s := range []string{
		`null`, `true`, `0`, `-0`, `1.5e300`, `1e400`, `-1e-400`, `123456789012345678901234567890`, `""`, `"x"`,
		`{"a": [1, 2, {"b": null}], "a": 3}`, `[1, "two", 3.0, [], {}]`, `"\u00e9\ud83d\ude00\\u0000\n"`,
		"\"caf\xe9\"", `"\ud800"`, `"\udc00\ud800"`, `"\\\ud800"`, `{"k": "v",}`, `[1 2]`, `01`, `1.`, `.5`, `"\x01"`,
		"\xef\xbb\xbf{}", ` {"spaces": true} `, `{} {}`, strings.Repeat("[", 1001) + strings.Repeat("]", 1001), `"` + strings.Repeat(`\u12`, 3) + `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := FromJSON(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			if json.Valid(data) && utf8.Valid(data) && !strings.Contains(err.Error(), "surrogate") && !strings.Contains(err.Error(), "nested too deeply") && !strings.Contains(err.Error(), "number") {
				t.Fatalf("FromJSON(%q) refused valid JSON text: %v", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("FromJSON(%q) accepted invalid JSON", data)
		}
		out, err := ToJSON(v)
		if err != nil {
			t.Fatalf("ToJSON(FromJSON(%q)): %v", data, err)
		}
		if !utf8.Valid(out) || !json.Valid(out) || !sameValue(data, out) {
			t.Fatalf("FromJSON(%q) wrote back %q", data, out)
		}
		v2, err := FromJSON(out)
		if err != nil {
			t.Fatalf("FromJSON of its own output %q: %v", out, err)
		}
		if out2, _ := ToJSON(v2); string(out2) != string(out) {
			t.Fatalf("not stable: %q then %q", out, out2)
		}
	})
}

// sameValue compares JSON texts by meaning (SameJSON).
func sameValue(a, b []byte) bool { return SameJSON(a, b) }
