// Package wait is how tests wait for something another goroutine or process
// does: poll a condition until it holds or a deadline passes, then fail the
// test. Tests never sleep and hope, and never assert how fast anything was.
package wait

import (
	"testing"
	"time"
)

// Timeouts for the usual cases.
const (
	// Default suits anything that should happen at once.
	Default = 10 * time.Second
	// Outage leaves room for the backoffs after a simulated outage.
	Outage = 30 * time.Second
)

// For polls cond until it holds, failing t after Default.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Default, what, cond)
}

// Long polls cond until it holds, failing t after Outage.
func Long(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Outage, what, cond)
}

// Within polls cond every 10ms until it holds, failing t after d.
func Within(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
