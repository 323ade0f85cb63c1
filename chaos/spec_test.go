package chaos_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/starflow/starflow/chaos"
)

// TestSpecExamplesAreValid keeps spec/chaos.md's profile and inline
// examples honest.
func TestSpecExamplesAreValid(t *testing.T) {
	doc, err := os.ReadFile("../spec/chaos.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- profile -->\\s*```yaml\\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("spec/chaos.md has no ```yaml block after <!-- profile -->")
	}
	p, err := chaos.ParseProfile("spec/chaos.md", m[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 6 || p.Seed != 42 {
		t.Fatalf("%+v", p)
	}
	m = regexp.MustCompile("(?s)<!-- inline -->\\s*```\\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("spec/chaos.md has no ``` block after <!-- inline -->")
	}
	for _, line := range strings.Split(strings.TrimSpace(string(m[1])), "\n") {
		if _, err := chaos.ParseInline(line, 1); err != nil {
			t.Errorf("%s: %v", line, err)
		}
	}
	// The inline examples at the top of the page.
	for _, q := range regexp.MustCompile(`--chaos '([^']+)'`).FindAllSubmatch(doc, -1) {
		if _, err := chaos.ParseInline(string(q[1]), 1); err != nil {
			t.Errorf("%s: %v", q[1], err)
		}
	}
}
