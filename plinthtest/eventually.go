// Package plinthtest holds helpers for Plinth's tests. Only test files
// import it, so it is never linked into a binary.
package plinthtest

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, failing the test after timeout (5 s
// when 0). It replaces fixed sleeps: a test waits exactly as long as the
// system needs, and a slow machine only makes it slower, not flaky.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}
