package datasafety

import (
	"fmt"

	"encoding/hex"
	"github.com/plinth-data/plinth"
	"strings"
	"testing"
)

// TestFF1NISTSamples checks the FF1 cipher against the samples NIST
// publishes for SP 800-38G (AES-128 and AES-256, radix 10 and 36).
func TestFF1NISTSamples(t *testing.T) {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	for _, c := range []struct {
		key, tweak, pt, ct string
		radix              int
	}{
		{"2B7E151628AED2A6ABF7158809CF4F3C", "", "0123456789", "2433477484", 10},
		{"2B7E151628AED2A6ABF7158809CF4F3C", "39383736353433323130", "0123456789", "6124200773", 10},
		{"2B7E151628AED2A6ABF7158809CF4F3C", "3737373770717273373737", "0123456789abcdefghi", "a9tv40mll9kdu509eum", 36},
		{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94", "", "0123456789", "6657667009", 10},
		{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94", "39383736353433323130", "0123456789", "1001623463", 10},
		{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94", "3737373770717273373737", "0123456789abcdefghi", "xs8a0azh2avyalyzuwd", 36},
	} {
		key, _ := hex.DecodeString(c.key)
		tweak, _ := hex.DecodeString(c.tweak)
		f, err := newFF1(key)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]byte, len(c.pt))
		for i := range c.pt {
			x[i] = byte(strings.IndexByte(alphabet, c.pt[i]))
		}
		if err := f.encrypt(x, c.radix, tweak); err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		for _, s := range x {
			got.WriteByte(alphabet[s])
		}
		if got.String() != c.ct {
			t.Errorf("FF1(%s, key %d bytes, tweak %q) = %s, want %s", c.pt, len(key), c.tweak, got.String(), c.ct)
		}
	}
}

func TestNHSValidMatchesCheckDigit(t *testing.T) {
	for body := uint64(999_000_000); body < 999_100_000; body++ {
		_, ok := plinth.NHSCheckDigit(fmt.Sprintf("%09d", body))
		if nhsValid(body) != ok {
			t.Fatalf("%d: nhsValid %v, NHSCheckDigit %v", body, nhsValid(body), ok)
		}
	}
}
