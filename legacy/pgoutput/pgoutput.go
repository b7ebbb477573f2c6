// Package pgoutput captures changes from PostgreSQL sources through
// logical replication with the built-in pgoutput plugin (jackc/pglogrepl).
// The source needs wal_level=logical and a user with the REPLICATION
// attribute who owns the mapped tables (or a superuser). Capture creates
// one publication (FOR TABLE the mapped tables) and one replication slot,
// both named after the mapping; Cleanup drops them. Those are the only
// things it writes to the source.
package pgoutput

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/plinth-data/plinth/legacy"
)

// Capture reads a PostgreSQL source's changes through a logical
// replication slot.
type Capture struct {
	url         string // the replication connection's URL
	db          *sql.DB
	current     atomic.Pointer[stream] // the last stream opened, for Backlog
	Slot        string
	Publication string
	tables      []string
	// MaxBatch is how many changes a batch gathers at most; a batch also
	// ends Gather after its first commit.
	MaxBatch int
	Gather   time.Duration
}

// Names are the slot's and publication's names for a mapping: plinth_
// and a hash of the mapping's identity (PostgreSQL allows 63 characters).
func Names(m *legacy.Mapping) string {
	h := sha256.Sum256([]byte(m.CheckpointName("cdc")))
	return "plinth_" + hex.EncodeToString(h[:8])
}

// New prepares a capture of the mapping's tables from the source at rawURL.
// It checks what the capture needs: every child table whose primary key
// does not hold the join columns must have REPLICA IDENTITY FULL, or a
// deleted child row could not name its parent.
func New(ctx context.Context, src *legacy.Source, rawURL string, m *legacy.Mapping) (*Capture, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("the source URL does not parse")
	}
	u.Scheme = "postgres"
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()
	var level string
	if err := src.DB.QueryRowContext(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return nil, err
	}
	if level != "logical" {
		return nil, fmt.Errorf("the source's wal_level is %s: change capture needs wal_level=logical (a server restart)", level)
	}
	if err := checkIdentity(ctx, src, m); err != nil {
		return nil, err
	}
	name := Names(m)
	return &Capture{url: u.String(), db: src.DB, Slot: name, Publication: name, tables: m.Tables(), MaxBatch: 2000, Gather: 20 * time.Millisecond}, nil
}

func checkIdentity(ctx context.Context, src *legacy.Source, m *legacy.Mapping) error {
	schema, err := src.Schema(ctx)
	if err != nil {
		return err
	}
	var fixes []string
	for _, c := range m.Joins() {
		t := schema[strings.ToLower(c.Table)]
		if t == nil {
			continue
		}
		covered := true
		for _, j := range c.Join {
			if !slices.Contains(t.PrimaryKey, strings.ToLower(j)) {
				covered = false
			}
		}
		if covered {
			continue
		}
		var ident string
		if err := src.DB.QueryRowContext(ctx, "SELECT relreplident::text FROM pg_class WHERE oid = to_regclass($1)", t.Name).Scan(&ident); err != nil {
			return err
		}
		if ident != "f" {
			fixes = append(fixes, fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", t.Name))
		}
	}
	if len(fixes) > 0 {
		return fmt.Errorf("change capture cannot tell which record a deleted child row belonged to: its primary key does not hold the join columns. Ask the source's owner to run:\n  %s", strings.Join(fixes, "\n  "))
	}
	return nil
}

func (c *Capture) connect(ctx context.Context) (*pgconn.PgConn, error) {
	conn, err := pgconn.Connect(ctx, c.url)
	if err != nil {
		return nil, fmt.Errorf("opening a replication connection: %s", scrub(err.Error(), c.url))
	}
	return conn, nil
}

// scrub removes the password from a driver's message.
func scrub(msg, raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "***")
		}
	}
	return msg
}

// SnapshotPosition (re)creates the publication and the slot, exporting the
// slot's snapshot, and makes the snapshot read exactly that: every change
// after the slot's consistent point is not in it.
func (c *Capture) SnapshotPosition(ctx context.Context, snap *legacy.Snapshot) (string, error) {
	if err := c.Cleanup(ctx); err != nil {
		return "", err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return "", err
	}
	quoted := make([]string, len(c.tables))
	for i, t := range c.tables {
		quoted[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", c.Publication, strings.Join(quoted, ", "))).ReadAll(); err != nil {
		conn.Close(ctx)
		return "", fmt.Errorf("creating the publication %s: %w", c.Publication, err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, c.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		conn.Close(ctx)
		return "", fmt.Errorf("creating the replication slot %s: %w", c.Slot, err)
	}
	if _, err := snap.Query(ctx, "SET TRANSACTION SNAPSHOT '"+res.SnapshotName+"'"); err != nil {
		conn.Close(ctx)
		return "", fmt.Errorf("reading the slot's snapshot: %w", err)
	}
	// The import is done; the exporting connection may go.
	conn.Close(ctx)
	return res.ConsistentPoint, nil
}

// Cleanup drops the capture's slot and publication, if they exist.
func (c *Capture) Cleanup(ctx context.Context) error {
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s'", c.Slot),
		"DROP PUBLICATION IF EXISTS " + c.Publication,
	} {
		if _, err := conn.Exec(ctx, q).ReadAll(); err != nil {
			return fmt.Errorf("dropping the slot and publication %s: %w", c.Slot, err)
		}
	}
	return nil
}

// Open starts streaming from the slot, after the position.
func (c *Capture) Open(ctx context.Context, from string) (legacy.Stream, error) {
	lsn, err := pglogrepl.ParseLSN(from)
	if err != nil {
		return nil, fmt.Errorf("the position %q is not an LSN", from)
	}
	if held, err := c.Holds(ctx, from); err != nil {
		return nil, err
	} else if !held {
		return nil, fmt.Errorf("%w: the replication slot %s is gone, lost its WAL or was moved past %s", legacy.ErrResnapshot, c.Slot, from)
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	err = pglogrepl.StartReplication(ctx, conn, c.Slot, lsn, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + c.Publication + "'"}})
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("starting replication from slot %s: %w", c.Slot, err)
	}
	s := &stream{c: c, conn: conn, acked: lsn, relations: map[uint32]*pglogrepl.RelationMessage{}}
	c.current.Store(s)
	return s, nil
}

type stream struct {
	c         *Capture
	conn      *pgconn.PgConn
	acked     pglogrepl.LSN // told to the slot, which may drop WAL before it
	stored    atomic.Uint64 // applied and stored (Stored): may be acked
	relations map[uint32]*pglogrepl.RelationMessage
	pending   []legacy.Change
	inTx      bool          // between a transaction's Begin and Commit
	returned  atomic.Uint64 // the position of the last batch Next returned
	// idle is the server's WAL end from a keepalive that came outside a
	// transaction: every change before it was sent.
	idle atomic.Uint64
}

// Backlog is how many bytes of WAL the source wrote after the stored
// position (pg_current_wal_lsn() minus it; legacy.Backlogger). When the
// target holds every batch returned and the server's last keepalive said
// it had sent everything up to a later point, that point counts as
// reached: WAL of other tables and databases is no backlog once the slot
// has decoded past it.
func (c *Capture) Backlog(ctx context.Context, stored string) (int64, error) {
	at, err := pglogrepl.ParseLSN(stored)
	if err != nil {
		return 0, err
	}
	if s := c.current.Load(); s != nil && uint64(at) >= s.returned.Load() {
		at = max(at, pglogrepl.LSN(s.idle.Load()))
	}
	var text string
	if err := c.db.QueryRowContext(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&text); err != nil {
		return 0, err
	}
	now, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return 0, err
	}
	return max(0, int64(now)-int64(at)), nil
}

// Holds reports whether the capture's slot still exists and can serve
// the position (legacy.PositionHolder).
func (c *Capture) Holds(ctx context.Context, stored string) (bool, error) {
	lsn, err := pglogrepl.ParseLSN(stored)
	if err != nil {
		return false, nil
	}
	// A slot that lost its WAL (max_slot_wal_keep_size) has no restart_lsn.
	var confirmed, restart sql.NullString
	err = c.db.QueryRowContext(ctx, "SELECT confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1", c.Slot).Scan(&confirmed, &restart)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if !restart.Valid || !confirmed.Valid {
		return false, nil
	}
	from, err := pglogrepl.ParseLSN(confirmed.String)
	return err == nil && from <= lsn, nil
}

func (s *stream) Close() error { return s.conn.Close(context.Background()) }

// Stored tells the stream that the target holds the changes up to the
// position and has stored it: the slot may then drop the WAL before it.
// RunCDC reads the next batch while it applies this one, so Next alone
// must not acknowledge what it returned.
func (s *stream) Stored(position string) {
	if lsn, err := pglogrepl.ParseLSN(position); err == nil {
		s.stored.Store(uint64(lsn))
	}
}

// Next acknowledges what was stored (see Stored), then gathers
// transactions.
func (s *stream) Next(ctx context.Context) (legacy.Batch, error) {
	if pglogrepl.LSN(s.stored.Load()) > s.acked {
		if err := s.ack(ctx); err != nil {
			return legacy.Batch{}, err
		}
	}
	var b legacy.Batch
	commits := 0
	var gathered time.Time // when the batch ends: Gather after its first commit
	for {
		deadline := time.Now().Add(5 * time.Second)
		if commits > 0 {
			deadline = gathered
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return b, ctx.Err()
			}
			if pgconn.Timeout(err) {
				if commits > 0 {
					return s.ret(b), nil
				}
				if err := s.ack(ctx); err != nil { // a status update keeps the connection alive
					return b, err
				}
				continue
			}
			return b, err
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			if e, isErr := msg.(*pgproto3.ErrorResponse); isErr {
				return b, fmt.Errorf("replication: %s", e.Message)
			}
			continue
		}
		committed, err := s.handle(ctx, cd.Data, &b)
		if err != nil {
			return b, err
		}
		if committed {
			if commits == 0 {
				gathered = time.Now().Add(s.c.Gather)
			}
			commits++
			if len(b.Changes) >= s.c.MaxBatch || !time.Now().Before(gathered) {
				return s.ret(b), nil
			}
		}
	}
}

// ret notes the position of a batch Next returns.
func (s *stream) ret(b legacy.Batch) legacy.Batch {
	if lsn, err := pglogrepl.ParseLSN(b.Position); err == nil {
		s.returned.Store(uint64(lsn))
	}
	return b
}

func (s *stream) ack(ctx context.Context) error {
	s.acked = max(s.acked, pglogrepl.LSN(s.stored.Load()))
	return pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.acked, WALFlushPosition: s.acked, WALApplyPosition: s.acked})
}

// handle takes one CopyData message; it reports whether a transaction committed.
func (s *stream) handle(ctx context.Context, data []byte, b *legacy.Batch) (bool, error) {
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err == nil && !s.inTx && len(b.Changes) == 0 {
			s.idle.Store(max(s.idle.Load(), uint64(ka.ServerWALEnd)))
		}
		if err == nil && ka.ReplyRequested {
			return false, s.ack(ctx)
		}
		return false, err
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return false, err
		}
		msg, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return false, err
		}
		return s.logical(msg, b), nil
	}
	return false, nil
}

func (s *stream) logical(msg pglogrepl.Message, b *legacy.Batch) bool {
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		s.relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		s.inTx = true
	case *pglogrepl.InsertMessage:
		s.change(m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		s.change(m.RelationID, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		s.change(m.RelationID, m.OldTuple, nil)
	case *pglogrepl.CommitMessage:
		s.inTx = false
		b.Changes = append(b.Changes, s.pending...)
		s.pending = s.pending[:0]
		b.Position = m.TransactionEndLSN.String()
		b.Committed = m.CommitTime
		return true
	}
	return false
}

func (s *stream) change(rel uint32, before, after *pglogrepl.TupleData) {
	r := s.relations[rel]
	if r == nil {
		return
	}
	// An update without an old tuple kept its key: the new row names the record.
	s.pending = append(s.pending, legacy.Change{Table: strings.ToLower(r.RelationName), Before: s.row(r, before), After: s.row(r, after)})
}

// row decodes a tuple's text values; integers become int64 so that they
// bind as the source's key values.
func (s *stream) row(r *pglogrepl.RelationMessage, t *pglogrepl.TupleData) legacy.Row {
	if t == nil {
		return nil
	}
	out := legacy.Row{}
	for i, col := range t.Columns {
		if i >= len(r.Columns) || col.DataType != pglogrepl.TupleDataTypeText {
			continue // null, or an unchanged TOAST value
		}
		name := strings.ToLower(r.Columns[i].Name)
		text := string(col.Data)
		switch r.Columns[i].DataType {
		case 20, 21, 23: // int8, int2, int4
			if n, err := strconv.ParseInt(text, 10, 64); err == nil {
				out[name] = n
				continue
			}
		}
		out[name] = text
	}
	return out
}
