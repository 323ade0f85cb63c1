package main

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkQuickstartPeakRSS builds the starflow binary and runs the
// README's first command (scripts/hello.star) in a fresh store, reporting
// the process's peak resident memory (target: under 64 MiB).
func BenchmarkQuickstartPeakRSS(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "starflow")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	b.ResetTimer()
	var peak int64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, "run", "../../scripts/hello.star", "--input", `{"name": "Ada", "pause": 0.1}`, "--db", filepath.Join(b.TempDir(), "db"))
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if kb := ru.Maxrss; kb > peak {
			peak = kb
		}
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}
