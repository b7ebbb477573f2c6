package plinthtest

import (
	"errors"
	"fmt"
	"testing"
)

func TestLastFormatsWhenPrinted(t *testing.T) {
	n, err := 1, error(nil)
	args := []any{Last(&n), Last(&err)}
	n, err = 42, errors.New("refused")
	if got := fmt.Sprintf("%d left, %v; %5d|%q", append(args, args[0], args[1])...); got != `42 left, refused;    42|"refused"` {
		t.Fatalf("got %s", got)
	}
}

func TestEventually(t *testing.T) {
	tries := 0
	Eventually(t, 0, func() bool { tries++; return tries == 3 }, "never")
	if tries != 3 {
		t.Fatalf("%d tries, want 3", tries)
	}
}
