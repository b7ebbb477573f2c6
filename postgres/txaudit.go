package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
)

var _ plinth.AuditAtCommitTx = (*tx)(nil)

// AppendAuditAtCommit adds a record to the audit log within the write
// transaction without a round trip of its own: the insert (and, for the
// transaction's first record, its announcement to the chainer, see
// audit.go) goes with the transaction's next statement, at the latest
// with COMMIT, which is where an error shows. *stored gets the record, with
// the log id the insert returns, when that round trip's results are read:
// a create through the API takes two round trips (BEGIN with the insert,
// then the event, the audit record and COMMIT).
func (x *tx) AppendAuditAtCommit(ctx context.Context, rec plinth.AuditRecord, stored *plinth.AuditRecord) error {
	rec = unchained(rec)
	args, err := auditArgs([]plinth.AuditRecord{rec})
	if err != nil {
		return fmt.Errorf("postgres: append an audit record: %w", err)
	}
	if !x.auditLocked {
		x.tx.queue(announceAudit, auditLockBase)
		x.auditLocked = true // queued first: the insert cannot run without it
	}
	x.tx.queue(insertAuditLogSQL, args...).QueryRow(func(row pgx.Row) error {
		var id int64
		if err := row.Scan(&id); err != nil {
			return err
		}
		rec.LogID = strconv.FormatInt(id, 10)
		*stored = rec
		return nil
	})
	return nil
}
