package datasafety

import (
	"testing"
	"time"
)

// TestParseDateOnlyAgreesWithTime: the fast date paths give what the time
// package gives, and refuse what it refuses.
func TestParseDateOnlyAgreesWithTime(t *testing.T) {
	for _, s := range []string{"2024-02-29", "2023-02-29", "2024-02-30", "0000-01-01", "9999-12-31", "2024-1-01",
		"2024-13-01", "2024-00-10", "2024-04-31", "1900-02-29", "2000-02-29", "20240101xx", "2024-01-0a", "+024-01-01"} {
		want, err := time.Parse(time.DateOnly, s)
		got, ok := parseDateOnly(s)
		if ok != (err == nil) || ok && !got.Equal(want) {
			t.Errorf("parseDateOnly(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, err)
		}
		for _, days := range []int{-180, -1, 1, 59, 180, 3000000} {
			r, ok := obfShiftDateOnly(s, days)
			if err != nil || !ok {
				continue
			}
			if w := want.AddDate(0, 0, days).Format(time.DateOnly); r != w {
				t.Errorf("obfShiftDateOnly(%q, %d) = %q, want %q", s, days, r, w)
			}
		}
	}
	for d := time.Date(1890, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2030; d = d.AddDate(0, 0, 13) {
		if s := dateOnly(d); s != d.Format(time.DateOnly) {
			t.Fatalf("dateOnly(%v) = %q", d, s)
		}
	}
}
