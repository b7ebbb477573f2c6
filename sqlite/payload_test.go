package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
)

// Outbox payloads come back byte for byte whatever their size and
// content; an event's JSON is stored compressed, in less than half the
// bytes; bytes that do not compress, and small payloads, are stored as
// they are; and rows an older Plinth wrote (before payload_encoding), in
// a table without the column, read as they were.
func TestOutboxPayloadsCompressed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	s := openAt(t, path)
	prepare(t, s, nil)
	// An older Plinth's outbox: no payload_encoding column, one row in it.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`ALTER TABLE "plinth_outbox" DROP COLUMN "payload_encoding"`); err != nil {
		t.Fatal(err)
	}
	old := []byte(`{"id":"old","eventData":{"newData":{"note":"` + strings.Repeat("written before ", 60) + `"}}}`)
	if _, err := db.Exec(`INSERT INTO "plinth_outbox" ("domain", "subject", "event_id", "payload", "created_at")
VALUES ('d', 's', 'old', ?, '2026-01-01T00:00:00.000000Z')`, old); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openAt(t, path)
	prepare(t, s, nil)

	event := []byte(`{"id":"e","eventType":"ResidentCreatedEvent","eventData":{"oldData":null,"newData":{` +
		strings.Repeat(`"firstName":"Joannie","lastName":"Elliott","postcode":"B13 7DB",`, 30) + `"mosaicId":1}}}`)
	noise := make([]byte, 4000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	payloads := map[string][]byte{"event": event, "noise": noise, "small": []byte(`{"a":1}`), "empty": {}, "nil": nil}
	for id, p := range payloads {
		if err := s.Write(ctx, func(tx plinth.Tx) error {
			return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "d", Subject: "s", EventID: id, Payload: p})
		}); err != nil {
			t.Fatal(err)
		}
	}
	payloads["old"] = old
	es, err := s.PendingEvents(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != len(payloads) {
		t.Fatalf("%d pending events, want %d", len(es), len(payloads))
	}
	for _, e := range es {
		want := payloads[e.EventID]
		if !bytes.Equal(e.Payload, want) || e.Payload == nil {
			t.Errorf("event %s: payload of %d bytes %.40q, want %d bytes %.40q", e.EventID, len(e.Payload), e.Payload, len(want), want)
		}
	}
	stored := func(id string) (int, string) {
		var n int
		var enc sql.NullString
		if err := db.QueryRow(`SELECT length("payload"), "payload_encoding" FROM "plinth_outbox" WHERE "event_id" = ?`, id).Scan(&n, &enc); err != nil {
			t.Fatal(err)
		}
		return n, enc.String
	}
	if n, enc := stored("event"); enc != "s2" || n > len(event)/2 {
		t.Errorf("an event's JSON of %d bytes is stored in %d (encoding %q); want under half, s2", len(event), n, enc)
	}
	for _, id := range []string{"noise", "small", "old"} {
		if n, enc := stored(id); enc != "" || n != len(payloads[id]) {
			t.Errorf("%s: stored in %d bytes, encoding %q; want as it is (%d bytes)", id, n, enc, len(payloads[id]))
		}
	}
	// A payload this Plinth cannot decode is an error naming the entry,
	// not bytes published as they are.
	if _, err := db.Exec(`UPDATE "plinth_outbox" SET "payload_encoding" = 'zz' WHERE "event_id" = 'small'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PendingEvents(ctx, 10); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", "small")) {
		t.Fatalf("pending events with an unknown encoding: %v; want an error naming the event", err)
	}
}
