package lake

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// scripted is a Source that hands out fixed batches, then nothing.
type scripted struct {
	batches [][]Message
	acked   uint64
}

func (s *scripted) Fetch(context.Context, int, time.Duration) ([]Message, error) {
	if len(s.batches) == 0 {
		return nil, nil
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}

func (s *scripted) Ack(_ context.Context, seq uint64) error { s.acked = seq; return nil }

// TestRedeliveredWhileBuffered checks that messages delivered again
// before their file lands (a redelivery, in or out of order) are landed
// once, while new ones after them still land.
func TestRedeliveredWhileBuffered(t *testing.T) {
	e, recs := rt.Residents(t, 20)
	msg := func(seq int) Message {
		entry, _, ok := plinth.BuildEvent(e, plinth.EventCreated, nil, &recs[seq-1], plinth.EventContext{Environment: "test",
			Now: time.Date(2026, 3, 1, 9, 0, seq, 0, time.UTC)})
		if !ok {
			t.Fatal("no event")
		}
		return Message{Seq: uint64(seq), Subject: entry.Subject, Data: entry.Payload}
	}
	seqs := func(s ...int) []Message {
		var out []Message
		for _, n := range s {
			out = append(out, msg(n))
		}
		return out
	}
	src := &scripted{batches: [][]Message{
		seqs(1, 2, 3, 4, 5, 6),
		seqs(4, 5, 6, 7, 8), // 4–6 again, then new ones
		seqs(2, 9, 3, 10),   // out of order: 2 and 3 again
	}}
	target := Dir(t.TempDir())
	l := NewLander(e.Domain, target, Config{Drain: true, Logger: slog.New(slog.DiscardHandler)})
	if err := l.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Landed != 10 || st.Duplicates != 5 || st.Files != 1 {
		t.Fatalf("landed %d in %d files with %d duplicates, want 10 in 1 with 5", st.Landed, st.Files, st.Duplicates)
	}
	if src.acked != 10 {
		t.Fatalf("acknowledged up to %d, want 10", src.acked)
	}
	objs, err := target.List(context.Background(), "")
	if err != nil || len(objs) != 1 {
		t.Fatalf("%v %v", objs, err)
	}
	b, _ := target.Get(context.Background(), objs[0].Key)
	got, err := parquet.ReadInt64Column(bytes.NewReader(b), int64(len(b)), "sequence")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("sequences %v, want 1…10 once each", got)
		}
	}
}
