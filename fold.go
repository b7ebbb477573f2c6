package plinth

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

var folder = cases.Fold()

// Fold returns s in the form prefix and contains filters compare: Unicode
// case-folded, with combining accents removed ("Zoë" → "zoe"), and spaces
// collapsed. Letters that are distinct letters rather than accented ones
// ("Ł") stay as they are, lower-cased. Stores keep a folded copy of every
// filtered text so that every engine compares the same way.
func Fold(s string) string {
	s = folder.String(norm.NFD.String(s))
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return norm.NFC.String(b.String())
}
