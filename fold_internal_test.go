package plinth

import (
	"math/rand/v2"
	"testing"
)

// The ASCII fast path folds exactly as the Unicode path does.
func TestFoldASCIIMatchesUnicode(t *testing.T) {
	cases := []string{"", " ", "  a  ", "Zoe", "O'Brien-SMITH", "a\tb\n\nc\r\vd\fe", "E8 1DY", "  Mc Donald ",
		"x\x00y\x1f", "ALL CAPS 123 !?", "trailing ", " leading", "dou  ble"}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "aZ \t\n.-'0\x01~"
	for range 20_000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		got, ok := foldASCII(s)
		if !ok {
			t.Fatalf("%q: the fast path refused ASCII", s)
		}
		if want := foldUnicode(s); got != want {
			t.Fatalf("%q: fast path %q, Unicode path %q", s, got, want)
		}
	}
	if _, ok := foldASCII("Zoë"); ok {
		t.Fatal("the fast path took non-ASCII text")
	}
	if Fold("ZOË  Łukasz") != "zoe łukasz" {
		t.Fatalf("Fold(ZOË  Łukasz) = %q", Fold("ZOË  Łukasz"))
	}
}
