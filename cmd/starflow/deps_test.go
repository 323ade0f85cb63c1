package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The starflow binary must not link the testing package (or anything
// that exists only for tests): test helpers stay out of production.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/starflow/starflow/cmd/starflow").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "testing", strings.HasPrefix(p, "testing/"),
			p == "github.com/starflow/starflow/internal/runtest",
			strings.HasSuffix(p, "/storetest"), strings.HasSuffix(p, "/llmtest"):
			t.Errorf("the starflow binary links %s", p)
		}
	}
}
