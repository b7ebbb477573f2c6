package legacy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// TestASCIITitleIsTheCasers: the ASCII fast path of the title transform
// gives what the caser gives, for every ASCII string of up to three
// characters and many longer ones.
func TestASCIITitleIsTheCasers(t *testing.T) {
	c := cases.Title(language.BritishEnglish)
	check := func(s string) {
		t.Helper()
		got, ok := asciiTitle(s)
		if want := c.String(strings.ToLower(s)); !ok || got != want {
			t.Fatalf("%q: %q, the caser %q", s, got, want)
		}
	}
	b := make([]byte, 3)
	for n := 0; n <= 3; n++ {
		total := 1
		for range n {
			total *= 128
		}
		for i := range total {
			for j, x := 0, i; j < n; j, x = j+1, x/128 {
				b[j] = byte(x % 128)
			}
			check(string(b[:n]))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcXYZ '.:-,;_/&()0129\t"
	for range 200000 {
		s := make([]byte, 4+r.IntN(17))
		for i := range s {
			if r.IntN(8) == 0 {
				s[i] = byte(r.IntN(128))
			} else {
				s[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		check(string(s))
	}
	for _, s := range []string{"o'brien", "SMITH-JONES", "mc donald", "st. john's wood", "1st floor", "anne-marie o'neil"} {
		check(s)
	}
	if _, ok := asciiTitle("zoë"); ok {
		t.Fatal("non-ASCII text taken by the fast path")
	}
}
