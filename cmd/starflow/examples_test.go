package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starflow/starflow/scripts/flakyserver"
)

// Every example workflow passes `starflow test`: crashed with SIGKILL before,
// during and after each of its calls, it resumes to the reference outcome
// and no completed side effect repeats. Each script's "# starflow test:"
// line says how it is tested.
func TestExamplesSurviveEveryCrash(t *testing.T) {
	crashMatrix(t)
	if testing.Short() {
		t.Skip("runs hundreds of processes")
	}
	scripts, _ := filepath.Glob("../../scripts/*.star")
	if len(scripts) < 6 {
		t.Fatalf("found only %v", scripts)
	}
	api := flakyserver.New(flakyserver.Options{Token: "example-token", RetryAfter: 20 * time.Millisecond})
	srv := httptest.NewServer(api)
	defer srv.Close()
	for _, script := range scripts {
		name := strings.TrimSuffix(filepath.Base(script), ".star")
		t.Run(name, func(t *testing.T) {
			args := []string{"test", script, "--db", t.TempDir()}
			env := append(os.Environ(), "STARFLOW_TEST_MAIN=1")
			if name == "flaky_api" {
				in, _ := json.Marshal(map[string]any{"url": srv.URL, "initial": "10ms"})
				args = append(args, "--input", string(in))
				env = append(env, "FLAKY_API_TOKEN=example-token")
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil || !strings.Contains(stdout.String(), " 0 failed") {
				t.Fatalf("starflow test %s: %v\n%s\n%s", name, err, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), "after its effect, before the journal") {
				t.Fatalf("no crash scenarios ran:\n%s", stdout.String())
			}
		})
	}
}
