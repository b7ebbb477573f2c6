package postgres

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
)

// Bringing the statements of support roles into the audit trail.
//
// pgaudit writes one LOG message per statement and table of a support role
// (supportaudit.go) to the server log; with log_destination = csvlog the
// collector writes them to <log_directory>/<log_filename>.csv. The message
// is "AUDIT: " and pgaudit's own CSV fields: AUDIT_TYPE, STATEMENT_ID,
// SUBSTATEMENT_ID, CLASS, COMMAND, OBJECT_TYPE, OBJECT_NAME, STATEMENT,
// PARAMETER and, with pgaudit.log_rows, ROWS.
//
// ImportSupportLog reads those files (it must run where it can read them:
// on the database host, or where they are shipped or mounted), keeps the
// AUDIT lines of roles in plinth.support_grants (revoked ones too: their
// statements were run while the grant held), and appends one audit record
// per line, linked to the grant by its correlation id. It remembers how far
// it read in the checkpoint SupportLogCheckpoint, written in the same
// transaction as the records, so that a second run adds nothing and an
// interrupted one resumes where the last commit left it.
//
// Files are read in name order, which is time order with the default
// log_filename (postgresql-%Y-%m-%d_%H%M%S.log); a log_filename that reuses
// names (postgresql-%a.log with log_truncate_on_rotation) is not supported:
// a file shorter than the checkpoint's offset is read again from the start.

// SupportLogCheckpoint names the checkpoint of ImportSupportLog.
const SupportLogCheckpoint = "plinth.support-log"

// SupportStatementOperation is the audit Operation of a support role's
// statement.
const SupportStatementOperation = "support-statement"

// maxStatementInReason bounds the statement text in an audit record's
// Reason; Filters["statement"] keeps up to plinth.MaxAuditFilter bytes,
// and the server log the whole text.
const maxStatementInReason = 512

// supportLogBatch is how many audit records one transaction appends.
const supportLogBatch = 500

// SupportLogOptions says which server log ImportSupportLog reads.
type SupportLogOptions struct {
	// Dir is the server's log_directory as this process sees it.
	Dir string
	// Since, when set, passes over log lines older than it: they are not
	// imported, now or later (the checkpoint moves past them).
	Since time.Time
}

// SupportLogResult says what ImportSupportLog did.
type SupportLogResult struct {
	Files      int // CSV log files read (from the checkpoint on)
	Statements int // audit records appended
	Skipped    int // AUDIT lines of support roles older than Since
	// Position is where the next run starts: file and byte offset.
	Position SupportLogPosition
}

// SupportLogPosition is the checkpoint: the file read last and how far.
type SupportLogPosition struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

// supportGrantRef is what a statement's audit record takes from its grant.
type supportGrantRef struct {
	user, domain, environment, correlationID string
}

// Columns of PostgreSQL's csvlog (13 and later; 14 added two at the end).
const (
	csvLogTime     = 0
	csvUser        = 1
	csvDatabase    = 2
	csvPID         = 3
	csvConnFrom    = 4
	csvSession     = 5
	csvSessionLine = 6
	csvSeverity    = 11
	csvMessage     = 13
	csvApplication = 22
	csvMinFields   = 23
)

// ImportSupportLog brings the statements of support roles from the CSV
// server log in opts.Dir into the audit trail (see above). The records
// are appended unchained; chain them with audit.ChainPending.
func (s *Store) ImportSupportLog(ctx context.Context, opts SupportLogOptions) (SupportLogResult, error) {
	var res SupportLogResult
	if opts.Dir == "" {
		return res, fmt.Errorf("postgres: support log: no log folder given: say where the server's CSV log files are (its log_directory, as this machine sees it)")
	}
	if _, ok := any(s).(auditAppender); !ok {
		return res, fmt.Errorf("postgres: support log: this store keeps no audit trail")
	}
	grants, err := s.supportGrantRefs(ctx)
	if err != nil {
		return res, err
	}
	files, err := filepath.Glob(filepath.Join(opts.Dir, "*.csv"))
	if err != nil {
		return res, err
	}
	if len(files) == 0 {
		if _, err := os.Stat(opts.Dir); err != nil {
			return res, fmt.Errorf("postgres: support log: cannot read the log folder: %w (plinth support log must run where the server's log files can be read)", err)
		}
		return res, fmt.Errorf("postgres: support log: no CSV log files (*.csv) in %s: the server must log with log_destination = 'csvlog' and logging_collector = on, and this folder must be its log_directory", opts.Dir)
	}
	slices.Sort(files)
	// Log times carry the zone abbreviation of log_timezone; Go reads an
	// abbreviation right only in the location it belongs to.
	loc := time.UTC
	var tz string
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('log_timezone')`).Scan(&tz); err == nil {
		if l, err := time.LoadLocation(tz); err == nil {
			loc = l
		}
	}

	var pos SupportLogPosition
	if c, found, err := s.Checkpoint(ctx, SupportLogCheckpoint); err != nil {
		return res, err
	} else if found {
		if err := json.Unmarshal(c.Value, &pos); err != nil {
			return res, fmt.Errorf("postgres: support log: the checkpoint %s is damaged (%v): delete it to read every log file again", SupportLogCheckpoint, err)
		}
	}
	res.Position = pos
	for i, path := range files {
		name := filepath.Base(path)
		if name < pos.File {
			continue
		}
		start, checkpointed := int64(0), int64(-1)
		if name == pos.File {
			start, checkpointed = pos.Offset, pos.Offset
		}
		n, skipped, end, err := s.importLogFile(ctx, path, start, checkpointed, i == len(files)-1, grants, opts.Since, loc)
		res.Statements += n
		res.Skipped += skipped
		if end.File != "" {
			res.Position = end
		}
		res.Files++
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// supportGrantRefs maps each support role ever granted to its grant.
func (s *Store) supportGrantRefs(ctx context.Context) (map[string]supportGrantRef, error) {
	out := map[string]supportGrantRef{}
	if ok, err := s.supportTableExists(ctx); err != nil || !ok {
		return out, err
	}
	if err := s.ensureSupportTable(ctx); err != nil { // the correlation id column
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT role, user_email, domain, environment, coalesce(correlation_id, '') FROM `+supportTable)
	if err != nil {
		return nil, s.wrap("support log: read the grants", err)
	}
	defer rows.Close()
	for rows.Next() {
		var role string
		var g supportGrantRef
		if err := rows.Scan(&role, &g.user, &g.domain, &g.environment, &g.correlationID); err != nil {
			return nil, s.wrap("support log: read the grants", err)
		}
		if g.correlationID == "" {
			g.correlationID = "support:" + role
		}
		out[role] = g
	}
	return out, s.wrap("support log: read the grants", rows.Err())
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// importLogFile imports one CSV log file from byte offset start. A record
// cut short at the end of the newest file (the collector is still writing
// it) waits for the next run; anywhere else it is an error.
func (s *Store) importLogFile(ctx context.Context, path string, start, checkpointed int64, newest bool, grants map[string]supportGrantRef,
	since time.Time, loc *time.Location) (imported, skipped int, end SupportLogPosition, err error) {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, end, fmt.Errorf("postgres: support log: %w (plinth support log must run as a user that may read the server's log files; log_file_mode = 0640 lets the server's group read them)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return 0, 0, end, err
	} else if fi.Size() < start {
		start = 0 // not the file the checkpoint read: read it all
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return 0, 0, end, err
	}
	cr := &countingReader{r: f}
	r := csv.NewReader(bufio.NewReaderSize(cr, 1<<16))
	r.FieldsPerRecord = -1
	r.ReuseRecord = false

	var batch []plinth.AuditRecord
	done := start // offset after the last record handled
	written := checkpointed
	flush := func() error {
		if len(batch) == 0 && written == done {
			return nil
		}
		pos := SupportLogPosition{File: name, Offset: done}
		value, _ := json.Marshal(pos)
		err := s.Write(ctx, func(t plinth.Tx) error {
			x := t.(*tx)
			for _, rec := range batch {
				if _, err := x.AppendAudit(ctx, rec); err != nil {
					return err
				}
			}
			return x.SetCheckpoint(ctx, SupportLogCheckpoint, value)
		})
		if err != nil {
			return fmt.Errorf("postgres: support log: record statements of %s up to byte %d: %w", name, done, err)
		}
		imported += len(batch)
		batch = batch[:0]
		written = done
		end = pos
		return nil
	}

	var pending []string // the last record read, complete once another follows
	var pendingEnd int64
	handle := func(rec []string, recEnd int64) error {
		if stmt, ok, old := supportStatement(rec, grants, since, loc); ok {
			if old {
				skipped++
			} else {
				batch = append(batch, stmt)
			}
		}
		done = recEnd
		if len(batch) >= supportLogBatch {
			return flush()
		}
		return nil
	}
	for {
		rec, rerr := r.Read()
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if newest {
				break // cut short while being written: the next run reads it
			}
			line, _ := r.FieldPos(0)
			if err := flush(); err != nil {
				return imported, skipped, end, err
			}
			return imported, skipped, end, fmt.Errorf("postgres: support log: %s is not a CSV server log (near line %d after byte %d: %v)", path, line, start, rerr)
		}
		recEnd := start + r.InputOffset()
		if pending != nil {
			if err := handle(pending, pendingEnd); err != nil {
				return imported, skipped, end, err
			}
		}
		pending, pendingEnd = rec, recEnd
	}
	if pending != nil {
		// The last record is complete only when its newline was written.
		var b [1]byte
		if _, err := f.ReadAt(b[:], pendingEnd-1); err == nil && b[0] == '\n' && len(pending) >= csvMinFields {
			if err := handle(pending, pendingEnd); err != nil {
				return imported, skipped, end, err
			}
		}
	}
	return imported, skipped, end, flush()
}

// supportStatement turns a csvlog record into the audit record of a support
// role's statement: ok is false for any other line; old is true when the
// line is older than since.
func supportStatement(rec []string, grants map[string]supportGrantRef, since time.Time, loc *time.Location) (_ plinth.AuditRecord, ok, old bool) {
	if len(rec) < csvMinFields {
		return plinth.AuditRecord{}, false, false
	}
	msg, isAudit := strings.CutPrefix(rec[csvMessage], "AUDIT: ")
	g, isSupport := grants[rec[csvUser]]
	if !isAudit || !isSupport {
		return plinth.AuditRecord{}, false, false
	}
	at, err := time.ParseInLocation("2006-01-02 15:04:05.000 MST", rec[csvLogTime], loc)
	if err != nil {
		at, err = time.Parse("2006-01-02 15:04:05.000 -07", rec[csvLogTime])
	}
	if err != nil {
		at = time.Time{}
	}
	if !since.IsZero() && !at.IsZero() && at.Before(since) {
		return plinth.AuditRecord{}, true, true
	}
	fields := parseAuditMessage(msg)
	get := func(i int) string {
		if i < len(fields) {
			return fields[i]
		}
		return ""
	}
	role := rec[csvUser]
	class, command, objType, object, statement, parameter, rows :=
		get(3), get(4), get(5), get(6), get(7), get(8), get(9)
	filters := map[string]string{
		"role":         role,
		"user":         g.user,
		"database":     rec[csvDatabase],
		"session":      rec[csvSession],
		"logLine":      rec[csvSessionLine],
		"pid":          rec[csvPID],
		"auditType":    get(0),
		"statementId":  get(1),
		"substatement": get(2),
		"class":        class,
		"command":      command,
		"statement":    statement,
	}
	if !strings.HasPrefix(parameter, "<") {
		filters["parameter"] = parameter
	}
	if objType != "" {
		filters["objectType"] = objType
	}
	if object != "" {
		filters["object"] = object
	}
	if rows != "" {
		filters["rows"] = rows
	}
	reason := fmt.Sprintf("%s %s", class, command)
	if object != "" {
		reason += " on " + strings.ToLower(objType) + " " + object
	}
	stmtText := strings.Join(strings.Fields(statement), " ")
	if len(stmtText) > maxStatementInReason {
		cut := maxStatementInReason
		for cut > 0 && !isRuneStart(stmtText[cut]) {
			cut--
		}
		stmtText = stmtText[:cut] + fmt.Sprintf("…[%d bytes]", len(statement))
	}
	reason += ": " + stmtText
	if at.IsZero() {
		at = plinth.Now()
		filters["logTime"] = rec[csvLogTime]
	}
	r := plinth.AuditRecord{
		Time:          at,
		CorrelationID: g.correlationID,
		Environment:   g.environment,
		Domain:        g.domain,
		Operation:     SupportStatementOperation,
		Principal:     plinth.Principal{Subject: role, Email: g.user},
		Decision:      plinth.DecisionAllow,
		Reason:        reason,
		Filters:       filters,
		ClientAddress: rec[csvConnFrom],
	}
	if len(rec) > csvApplication {
		r.UserAgent = rec[csvApplication]
	}
	if object != "" {
		r.RecordIDs = []string{object}
	}
	if n, err := strconv.Atoi(rows); err == nil {
		r.Count = n
	}
	return plinth.BoundAudit(r), true, false
}

// parseAuditMessage splits pgaudit's message (after "AUDIT: ") into its
// fields. pgaudit quotes a field as CSV does when it holds a comma, a quote
// or a line break; the statement may hold anything.
func parseAuditMessage(msg string) []string {
	r := csv.NewReader(strings.NewReader(msg))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	fields, err := r.Read()
	if err != nil && !errors.Is(err, io.EOF) {
		return strings.SplitN(msg, ",", 10)
	}
	return fields
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ServerLogDir returns the server's log_directory, made absolute with its
// data_directory: where the server writes its log files, on its own host.
// Reading them needs a superuser or pg_read_all_settings.
func (s *Store) ServerLogDir(ctx context.Context) (string, error) {
	var dir, data string
	err := s.pool.QueryRow(ctx, `SELECT current_setting('log_directory'), current_setting('data_directory')`).Scan(&dir, &data)
	if err != nil {
		return "", s.wrap("support log: read the server's log_directory", err)
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(data, dir)
	}
	return dir, nil
}
