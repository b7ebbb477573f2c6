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
	if f, ok := foldASCII(s); ok {
		return f
	}
	return foldUnicode(s)
}

// foldASCII is Fold of an ASCII string (false for any other): lower case,
// runs of white space as one space, none at either end. Most filtered
// text is ASCII, and this is many times faster than normalising it.
func foldASCII(s string) (string, bool) {
	clean := true // already folded: returned as it is
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 0x80:
			return "", false
		case 'A' <= c && c <= 'Z', asciiSpace(c) && (c != ' ' || i == 0 || i == len(s)-1 || s[i-1] == ' '):
			clean = false
		}
	}
	if clean {
		return s, true
	}
	b := make([]byte, 0, len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if asciiSpace(c) {
			space = true
			continue
		}
		if space && len(b) > 0 {
			b = append(b, ' ')
		}
		space = false
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b), true
}

// asciiSpace is unicode.IsSpace for ASCII.
func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// foldUnicode is Fold of any string.
func foldUnicode(s string) string {
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
