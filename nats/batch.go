package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/lake"
)

// BatchSource is a durable JetStream consumer that hands a stream's
// messages over in batches, in stream order, and acknowledges them all up
// to a sequence at once (AckAll). The data lake lands events from it
// (lake.Source).
//
// It is meant for one reader at a time per durable name. When it starts
// it puts the durable back at its acknowledgement floor (deletes and
// recreates it there), so every message not yet acknowledged comes again
// at once and in order, not after its ack wait: a reader that crashed
// mid-batch resumes where its last acknowledged batch ended, and an
// acknowledgement up to a sequence never covers a message it has not
// handled. (Were the process to stop between the delete and the create,
// the next start creates the durable afresh from the stream's start, and
// the lake skips every event it already holds: slower, not wrong.)
type BatchSource struct {
	cons  jetstream.Consumer
	pull  int  // messages the next pull asks for (see Fetch)
	live  bool // the last pull found few messages: live traffic (see Fetch)
	noAck bool // a reader that is never acknowledged (LiveSource's catching up)

	mu   sync.Mutex
	ends map[uint64]jetstream.Msg // the last message of each batch not yet acknowledged
}

// NewBatchSource opens (creating, or resetting to its acknowledgement
// floor) the durable consumer of a stream. ackWait must exceed the longest
// a batch is held before it is acknowledged.
func NewBatchSource(ctx context.Context, js jetstream.JetStream, stream, durable string, ackWait time.Duration) (*BatchSource, error) {
	cc := batchConsumerConfig(durable, ackWait)
	old, err := js.Consumer(ctx, stream, durable)
	switch {
	case err == nil:
		floor := old.CachedInfo().AckFloor.Stream
		if err := js.DeleteConsumer(ctx, stream, durable); err != nil {
			return nil, fmt.Errorf("nats: resetting the consumer %s of %s: %w", durable, stream, err)
		}
		if floor > 0 {
			cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cc.OptStartSeq = floor + 1
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("nats: reading the consumer %s of %s: %w", durable, stream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("nats: creating the consumer %s of %s: %w", durable, stream, err)
	}
	return &BatchSource{cons: cons, ends: map[uint64]jetstream.Msg{}}, nil
}

// batchConsumerConfig is the durable consumer a BatchSource reads: from
// the stream's start, acknowledged up to a sequence at once.
func batchConsumerConfig(durable string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "Plinth data lake",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 1 << 20,
	}
}

// Fetch returns the messages waiting, up to limit; when none wait, it waits
// up to wait for one (and then takes the others that came with it).
//
// Under live traffic it first lets messages gather: after a pull that
// found few, the next waits liveGather (at most a quarter of wait) before
// it asks. Every pull is a request the server answers, and a subscription
// the client makes and drops; a lander keeping up with a steady stream of
// writes pulled again as soon as it had written what the last pull found,
// a few messages at a time, hundreds of pulls a second. The lake holds
// what it fetches until its flush interval anyway, so the wait delays no
// file.
//
// A pull's size follows what the pulls find: it starts small, grows
// fourfold while pulls come back full (a backlog) and halves while they
// come back mostly empty. A pull costs a buffer of its size (the client
// makes a channel of that many messages), and a lander keeping up with
// live traffic pulls often and finds few: at the full limit every pull
// cost 256 KiB, most of what plinth serve allocated under writes.
func (s *BatchSource) Fetch(ctx context.Context, limit int, wait time.Duration) ([]lake.Message, error) {
	if s.live {
		if err := pause(ctx, min(liveGather, wait/4)); err != nil {
			return nil, nil // stopping: the caller sees ctx
		}
	}
	n := min(max(s.pull, minPull), limit)
	out, err := s.fetch(ctx, n, 0)
	switch {
	case len(out) == n:
		s.pull = n * 4
	case len(out) < n/4:
		s.pull = n / 2
	}
	s.live = len(out) < n/4
	if len(out) > 0 || err != nil {
		return out, err
	}
	if out, err = s.fetch(ctx, 1, max(wait, 10*time.Millisecond)); len(out) == 0 || err != nil {
		return out, err
	}
	more, err := s.fetch(ctx, min(max(s.pull, minPull), limit)-1, 0)
	return append(out, more...), err
}

// minPull is the smallest pull Fetch makes.
const minPull = 256

// liveGather is how long Fetch lets messages gather under live traffic
// before it pulls.
const liveGather = 250 * time.Millisecond

// pause waits d, or until ctx is done (returning its error).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetch makes one pull request: without waiting when wait is 0.
func (s *BatchSource) fetch(ctx context.Context, n int, wait time.Duration) ([]lake.Message, error) {
	if n <= 0 {
		return nil, nil
	}
	var batch jetstream.MessageBatch
	var err error
	if wait == 0 {
		batch, err = s.cons.FetchNoWait(n)
	} else {
		wctx, cancel := context.WithTimeout(ctx, max(wait, 100*time.Millisecond))
		defer cancel()
		batch, err = s.cons.Fetch(n, jetstream.FetchContext(wctx))
		if err != nil && wctx.Err() != nil {
			return nil, nil // waited long enough (or stopping: the caller sees ctx)
		}
	}
	if err != nil {
		return nil, err
	}
	var out []lake.Message
	var last jetstream.Msg
	var lastSeq uint64
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return out, err
		}
		seq := md.Sequence.Stream
		if seq > lastSeq {
			last, lastSeq = msg, seq
		}
		out = append(out, lake.Message{Seq: seq, Subject: msg.Subject(), Data: msg.Data()})
	}
	if last != nil && !s.noAck {
		s.mu.Lock()
		s.ends[lastSeq] = last
		s.mu.Unlock()
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return out, err
	}
	return out, nil
}

// Ack acknowledges every message up to seq, which must end a batch
// Fetch returned, and waits for the server to confirm it.
func (s *BatchSource) Ack(ctx context.Context, seq uint64) error {
	s.mu.Lock()
	msg := s.ends[seq]
	for k := range s.ends {
		if k <= seq {
			delete(s.ends, k)
		}
	}
	s.mu.Unlock()
	if msg == nil {
		return fmt.Errorf("nats: acknowledging up to %d, which ends no batch delivered", seq)
	}
	return msg.DoubleAck(ctx)
}

// LastSequence returns the sequence of the last message in a stream (0
// when it is empty or was never created): the position a lake snapshot
// records.
func LastSequence(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil // nothing published yet
	}
	if err != nil {
		return 0, fmt.Errorf("nats: reading the stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("nats: reading the stream %s: %w", stream, err)
	}
	return info.State.LastSeq, nil
}
