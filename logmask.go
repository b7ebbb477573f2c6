package plinth

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Masked stands in log lines for a value that may be personal data.
const Masked = "***"

var (
	// detailRE is the "Key (column)=(value)" of a PostgreSQL constraint
	// error's DETAIL, should one be quoted into an error's text.
	detailRE = regexp.MustCompile(`\)=\((?:[^()]|\([^()]*\))*\)`)
	// quotedRE is a quoted string: drivers quote the values they refuse
	// (`invalid input syntax for type uuid: "…"`).
	quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	// longDigitsRE is a run of digits long enough to identify someone (NHS
	// numbers, UPRNs, phone numbers), spaces allowed between groups.
	longDigitsRE = regexp.MustCompile(`\+?\d[\d ]{3,}\d`)
	// emailRE is an e-mail address.
	emailRE = regexp.MustCompile(`[^\s"'<>(),;:]+@[^\s"'<>(),;:]+\.[A-Za-z]{2,}`)
	// detailTailRE is what follows "DETAIL:" in a driver's message.
	detailTailRE = regexp.MustCompile(`(?s)(DETAIL:\s*).*`)
)

// MaskText removes what may be personal data from free text, such as an
// error from a store or a driver: quoted strings, the values of a
// PostgreSQL DETAIL ("Key (nhs_number)=(***)"), e-mail addresses, and runs
// of five or more digits. Each of the secrets (values known to have come
// with the request) is masked wherever it appears.
func MaskText(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" && strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Masked)
		}
	}
	s = detailTailRE.ReplaceAllString(s, "${1}"+Masked)
	s = detailRE.ReplaceAllString(s, ")=("+Masked+")")
	s = quotedRE.ReplaceAllStringFunc(s, func(q string) string { return q[:1] + Masked + q[len(q)-1:] })
	s = emailRE.ReplaceAllString(s, Masked)
	return longDigitsRE.ReplaceAllString(s, Masked)
}

// Secrets gathers values that may be personal data (a request's body
// values, query values and path ids), longest first, for MaskText. It is
// not safe for concurrent use.
type Secrets struct {
	values []string
	seen   map[string]struct{}
	sorted bool // values are longest first
}

// Add notes values, and the forms a store may echo them in (upper and
// lower case, folded as filters compare them, without spaces). Values too short to identify anyone (one character,
// numbers under three digits) are left out, so log lines stay readable.
// Each form is kept once; they are sorted when Values asks for them
// (a create's body has dozens of values, and sorting after each one was
// 5 % of serve's CPU per create).
func (s *Secrets) Add(values ...string) {
	for _, v := range values {
		v = strings.TrimSpace(v)
		if len(v) < 2 || (len(v) < 3 && strings.Trim(v, "0123456789") == "") {
			continue
		}
		ns := strings.ReplaceAll(v, " ", "")
		for _, f := range []string{v, strings.ToUpper(v), strings.ToLower(v), Fold(v), ns, strings.ToUpper(ns)} {
			if _, ok := s.seen[f]; ok {
				continue
			}
			if s.seen == nil {
				s.seen = map[string]struct{}{}
			}
			s.seen[f] = struct{}{}
			s.values = append(s.values, f)
			s.sorted = false
		}
	}
}

// AddDocument notes every scalar value in a decoded JSON document.
func (s *Secrets) AddDocument(v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			s.AddDocument(x)
		}
	case []any:
		for _, x := range v {
			s.AddDocument(x)
		}
	case string:
		s.Add(v)
	case nil, bool:
	default:
		s.Add(fmt.Sprint(v))
	}
}

// Values returns the noted values, longest first.
func (s *Secrets) Values() []string {
	if s == nil {
		return nil
	}
	if !s.sorted {
		slices.SortStableFunc(s.values, func(a, b string) int { return len(b) - len(a) })
		s.sorted = true
	}
	return s.values
}

// MaskLogs returns a handler that masks personal data in every record
// before h sees it: every attribute value goes through MaskText with the
// values secrets returns (nil for none), the message through MaskText
// alone, except the
// attributes Plinth itself sets from safe sources (route templates,
// methods, statuses, correlation ids, durations). Errors, panics and any
// other value are formatted first, so nothing reaches h unmasked.
func MaskLogs(h slog.Handler, secrets func() []string) slog.Handler {
	if m, ok := h.(*maskingHandler); ok && secrets == nil {
		return m
	}
	return &maskingHandler{h: h, secrets: secrets}
}

type maskingHandler struct {
	h       slog.Handler
	secrets func() []string
}

// safeKeys are attributes whose values never hold record data.
var safeKeys = map[string]bool{
	"route": true, "method": true, "status": true, "correlationId": true, "durationMs": true,
	"bytes": true, "stack": true, "environment": true, "address": true, "store": true,
	"level": true, "time": true, "msg": true,
}

func (m *maskingHandler) Enabled(ctx context.Context, l slog.Level) bool { return m.h.Enabled(ctx, l) }

func (m *maskingHandler) Handle(ctx context.Context, r slog.Record) error {
	secrets := m.lazySecrets()
	// Messages are constant text, save those net/http and libraries log:
	// masked by shape only.
	out := slog.NewRecord(r.Time, r.Level, MaskText(r.Message, nil), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a, secrets))
		return true
	})
	return m.h.Handle(ctx, out)
}

// lazySecrets returns the secrets, computed on first use: most lines
// carry only safe attributes and need none.
func (m *maskingHandler) lazySecrets() func() []string {
	if m.secrets == nil {
		return func() []string { return nil }
	}
	return sync.OnceValue(m.secrets)
}

func (m *maskingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	secrets := m.lazySecrets()
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a, secrets)
	}
	return &maskingHandler{h: m.h.WithAttrs(masked), secrets: m.secrets}
}

func (m *maskingHandler) WithGroup(name string) slog.Handler {
	return &maskingHandler{h: m.h.WithGroup(name), secrets: m.secrets}
}

func maskAttr(a slog.Attr, secrets func() []string) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = maskAttr(x, secrets)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindString:
		if safeKeys[a.Key] {
			return slog.Attr{Key: a.Key, Value: v}
		}
		return slog.String(a.Key, MaskText(v.String(), secrets()))
	case slog.KindAny:
		if safeKeys[a.Key] && a.Key == "stack" {
			return slog.Attr{Key: a.Key, Value: v}
		}
		return slog.String(a.Key, MaskText(fmt.Sprint(v.Any()), secrets()))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
