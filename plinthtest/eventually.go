// Package plinthtest holds helpers for Plinth's tests. Only test files
// import it, so it is never linked into a binary.
package plinthtest

import (
	"fmt"
	"testing"
	"time"
)

// Eventually polls cond until it holds, failing the test after timeout (5 s
// when 0). It replaces fixed sleeps: a test waits exactly as long as the
// system needs, and a slow machine only makes it slower, not flaky.
//
// The message's arguments are formatted when the test fails; pass Last(&v)
// to show the value a variable that cond sets had at the last try.
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

// Last formats as *p does when it is printed, not when it is passed: as an
// argument of Eventually's message it shows what cond saw last.
//
//	var n int
//	plinthtest.Eventually(t, 0, func() bool { n = count(); return n == 0 }, "%d left", plinthtest.Last(&n))
func Last[T any](p *T) fmt.Formatter { return last[T]{p} }

type last[T any] struct{ p *T }

func (l last[T]) Format(f fmt.State, verb rune) { fmt.Fprintf(f, fmt.FormatString(f, verb), *l.p) }
