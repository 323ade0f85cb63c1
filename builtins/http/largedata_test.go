package http_test

import "testing"

// largeData skips a test that moves tens of megabytes through the journal
// under the race detector, where it takes a minute: .ci/run runs it without
// -race in its own step.
func largeData(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("moves tens of megabytes: .ci/run runs it without -race in its own step")
	}
}
