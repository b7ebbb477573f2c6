package postgres

import (
	"context"
	"time"
)

// ServerTime is the database server's clock (clock_timestamp(), not the
// transaction's start), for plinth doctor to compare with the local one:
// audit times, token expiry and the outbox's ages assume they agree.
func (s *Store) ServerTime(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t)
	return t, s.wrap("read the server time", err)
}
