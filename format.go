package plinth

import (
	"fmt"
	"net/mail"
	"regexp"
	"strings"
)

var (
	postcodeRE = regexp.MustCompile(`^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$`)
	phoneRE    = regexp.MustCompile(`^\+?[0-9][0-9 ()-]*$`)
	niRE       = regexp.MustCompile(`^[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]$`)
	digitsRE   = regexp.MustCompile(`^[0-9]+$`)
	// nhsSeparators is built once: a Replacer builds its tables on first use.
	nhsSeparators = strings.NewReplacer(" ", "", "-", "")
)

// checkFormat checks a string against a format and returns its canonical
// form: postcodes upper-case with one space ("E8 1DY"), NHS and NI numbers
// without spaces.
func checkFormat(f Format, s string) (string, error) {
	switch f {
	case FormatEmail:
		a, err := mail.ParseAddress(s)
		if err != nil || a.Address != s || a.Name != "" {
			return "", fmt.Errorf("must be an e-mail address such as name@example.org")
		}
	case FormatPhone:
		digits := 0
		for _, r := range s {
			if r >= '0' && r <= '9' {
				digits++
			}
		}
		if !phoneRE.MatchString(s) || digits < 7 || digits > 15 {
			return "", fmt.Errorf("must be a phone number of 7 to 15 digits, such as 020 7946 0000 or +44 20 7946 0000")
		}
	case FormatUKPostcode:
		m := postcodeRE.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
		if m == nil {
			return "", fmt.Errorf("must be a UK postcode such as E8 1DY")
		}
		return m[1] + " " + m[2], nil
	case FormatNHSNumber:
		n := nhsSeparators.Replace(s)
		if len(n) != 10 || !digitsRE.MatchString(n) || !nhsChecksumOK(n) {
			return "", fmt.Errorf("must be a 10-digit NHS number with a valid check digit")
		}
		return n, nil
	case FormatNINumber:
		n := strings.ToUpper(strings.ReplaceAll(s, " ", ""))
		if !niRE.MatchString(n) {
			return "", fmt.Errorf("must be a National Insurance number such as AB123456C")
		}
		switch n[:2] {
		case "BG", "GB", "NK", "KN", "TN", "NT", "ZZ":
			return "", fmt.Errorf("must be a National Insurance number such as AB123456C")
		}
		return n, nil
	case FormatUPRN:
		if len(s) > 12 || !digitsRE.MatchString(s) {
			return "", fmt.Errorf("must be a UPRN of 1 to 12 digits")
		}
	}
	return s, nil
}

// nhsChecksumOK checks the modulus-11 check digit of a 10-digit NHS number.
func nhsChecksumOK(n string) bool {
	c, ok := NHSCheckDigit(n[:9])
	return ok && c == n[9]
}

// NHSCheckDigit returns the check digit for the first nine digits of an NHS
// number, and false when no digit makes them valid.
func NHSCheckDigit(first9 string) (byte, bool) {
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(first9[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 {
		return 0, false
	}
	return byte('0' + check), true
}
