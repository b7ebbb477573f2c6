package plinth_test

import (
	"slices"
	"testing"

	"github.com/plinth-data/plinth"
)

// Secrets keeps each form of a value once, longest first (ties in the
// order they were added), and sorts in what is added after Values.
func TestSecretsOnceLongestFirst(t *testing.T) {
	var s plinth.Secrets
	s.Add("Ann Lee", "x", "42", "ann lee", "Bob")
	want := []string{"Ann Lee", "ANN LEE", "ann lee", "AnnLee", "ANNLEE", "annlee", "Bob", "BOB", "bob"}
	if got := s.Values(); !slices.Equal(got, want) {
		t.Fatalf("Values() = %q, want %q", got, want)
	}
	s.Add("Christopher", "Bob")
	got := s.Values()
	if got[0] != "Christopher" || len(got) != len(want)+3 {
		t.Fatalf("after a second Add: %q", got)
	}
	for i := 1; i < len(got); i++ {
		if len(got[i]) > len(got[i-1]) {
			t.Fatalf("not longest first: %q", got)
		}
	}
	if (*plinth.Secrets)(nil).Values() != nil {
		t.Error("a nil Secrets has values")
	}
}
