package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/plinth-data/plinth"
)

// unavailable reports whether err means the database cannot be reached
// (as opposed to a bad statement or a constraint), so the caller should
// answer 503 and try again later.
func unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"): // connection exception
			return true
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // admin shutdown, crash shutdown, cannot connect now
			return true
		case pe.Code == "53300": // too many connections
			return true
		case pe.Code == "3D000": // the database does not exist (any more)
			return true
		}
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	return strings.Contains(err.Error(), "conn closed")
}

// wrap adds what was being done to an error from pgx, and marks
// connection failures with plinth.ErrUnavailable and duplicate keys with
// plinth.ErrConflict.
func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var ve *plinth.ValidationError
	if errors.As(err, &ve) {
		return err
	}
	if errors.Is(err, plinth.ErrNotFound) || errors.Is(err, plinth.ErrVersionConflict) ||
		errors.Is(err, plinth.ErrConflict) || errors.Is(err, plinth.ErrUnavailable) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("postgres: %s: %w: %w", what, plinth.ErrConflict, err)
	}
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "42703") {
		return fmt.Errorf("postgres: %s: the table or a column does not exist; prepare the store (plinth serve does so at start): %w", what, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if unavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		cause := &redactedError{msg: s.cause(err)}
		if !strings.Contains(err.Error(), s.password) || s.password == "" {
			cause.err = err
		}
		return fmt.Errorf("postgres: %s: %w: cannot reach %s: %w", what, plinth.ErrUnavailable, s.where, cause)
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// redactedError carries the text of an error with the password removed,
// and unwraps only to errors whose text holds none.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact replaces the password, as given and as URL-encoded, in s.
func redact(s, password string) string {
	if password == "" {
		return s
	}
	for _, p := range []string{password, url.QueryEscape(password), url.PathEscape(password), url.UserPassword("u", password).String()[2:]} {
		if p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	return s
}

var urlPasswordRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/]*:([^@]*)@`)
var kvPasswordRE = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// passwordOf finds the password in a connection string, even one that
// does not parse.
func passwordOf(conn string) string {
	if u, err := url.Parse(conn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			return p
		}
	}
	if m := urlPasswordRE.FindStringSubmatch(conn); m != nil {
		if p, err := url.PathUnescape(m[1]); err == nil {
			return p
		}
		return m[1]
	}
	if m := kvPasswordRE.FindStringSubmatch(conn); m != nil {
		return strings.Trim(m[1], "'")
	}
	return ""
}
