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

// LiveSource is the data lake's source inside the process that publishes
// the events (plinth serve on its embedded NATS server): it hands the lake
// the events this process's Publisher has just stored, from memory
// (Publisher.Follow), and reads the stream only to catch up: at start,
// from the durable consumer's acknowledgement floor, and after a gap (an
// event it was not handed: published by another process, or dropped
// because the lake fell behind and the queue in memory was full).
//
// Why: a consumer reading the newest messages keeps each 8 MiB message
// block's cache in memory for ten seconds after its last read, so the
// server takes a fresh buffer for every new block instead of reusing the
// last one's, and keeps the acknowledgement state of every message
// delivered and not yet landed (a minute of events), writing it out again
// and again. Under creates serve's peak RSS was 185 MB with the lake and 90
// MB without, and its CPU per create 424–524 µs against 354–356
// (BENCHMARKS.md, "2026-12-01, tenth session").
//
// The durable consumer is only a bookmark here: its acknowledgement floor
// is the last event landed, and Ack moves it by recreating the durable at
// the next event. Catching up reads through a consumer of its own, made
// at the sequence needed next and never acknowledged, so that reading
// past events not yet landed never moves the bookmark: a crash at any
// point makes the next start hand over, at worst, events the lake already
// holds, which it skips.
type LiveSource struct {
	js              jetstream.JetStream
	stream, durable string

	mu     sync.Mutex
	queue  []lake.Message // stored by this process, not yet handed over, ascending
	bytes  int            // the payload bytes in queue
	wake   chan struct{}  // signalled (never blocking) when queue grows
	next   uint64         // the sequence Fetch hands over next
	reader *BatchSource   // reading the stream, while catching up; nil while live
	few    bool           // the last live Fetch found few messages (see Fetch)
	stop   func()         // ends the Follow
}

// maxLiveBytes bounds the payloads a LiveSource holds: an event that would
// go beyond is dropped, and read from the stream later (a gap).
const maxLiveBytes = 32 << 20

// NewLiveSource follows what pub stores in the stream, from the event
// after the durable consumer's acknowledgement floor (the stream's start
// when there is no such consumer yet).
func NewLiveSource(ctx context.Context, pub *Publisher, stream, durable string) (*LiveSource, error) {
	s := &LiveSource{js: pub.JetStream(), stream: stream, durable: durable, wake: make(chan struct{}, 1)}
	// Follow first, so that nothing stored after the floor is read is
	// missed: what both the follower and the reader deliver is handed
	// over once (next).
	s.stop = pub.Follow(stream, s.offer)
	s.next = 1
	c, err := s.js.Consumer(ctx, stream, durable)
	switch {
	case err == nil:
		s.next = c.CachedInfo().AckFloor.Stream + 1
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		s.stop()
		return nil, fmt.Errorf("nats: reading the consumer %s of %s: %w", durable, stream, err)
	}
	if err := s.resume(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// Close stops following the publisher and drops the reader.
func (s *LiveSource) Close() {
	s.stop()
	s.mu.Lock()
	r := s.reader
	s.reader = nil
	s.mu.Unlock()
	s.dropReader(r)
}

// offer takes an event the publisher stored.
func (s *LiveSource) offer(m lake.Message) {
	s.mu.Lock()
	if s.bytes+len(m.Data) <= maxLiveBytes && (len(s.queue) == 0 || m.Seq > s.queue[len(s.queue)-1].Seq) {
		s.queue = append(s.queue, m)
		s.bytes += len(m.Data)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Fetch returns up to limit events in stream order, waiting up to wait for
// the first. While live, after a Fetch that found few it first lets events
// gather for a moment, as BatchSource does (a lake keeping up with writes
// would otherwise take them one at a time).
func (s *LiveSource) Fetch(ctx context.Context, limit int, wait time.Duration) ([]lake.Message, error) {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		s.dropBefore(s.next)
		if r := s.reader; r != nil {
			if len(s.queue) > 0 && s.queue[0].Seq == s.next {
				s.reader, s.few = nil, false // caught up: live from here
				s.mu.Unlock()
				s.dropReader(r)
				continue
			}
			s.mu.Unlock()
			return s.catchUp(ctx, r, limit, time.Until(deadline))
		}
		if len(s.queue) > 0 && s.queue[0].Seq != s.next {
			s.mu.Unlock()
			if err := s.resume(ctx); err != nil { // a gap: read it from the stream
				return nil, err
			}
			continue
		}
		if len(s.queue) > 0 && !s.few {
			out := s.take(limit)
			s.mu.Unlock()
			return out, nil
		}
		gather := len(s.queue) > 0 // few last time: let more come first
		s.few = false
		s.mu.Unlock()
		pause := time.Until(deadline)
		if gather {
			pause = min(liveGather, wait/4)
		}
		if !s.sleep(ctx, pause, !gather) && !gather {
			return nil, nil // nothing came (or stopping: the caller sees ctx)
		}
	}
}

// sleep waits d, or until ctx is done, or (when woken) until an event
// comes; false when ctx ended or d passed without one.
func (s *LiveSource) sleep(ctx context.Context, d time.Duration, woken bool) bool {
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if woken {
		wake = s.wake
	}
	select {
	case <-wake:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// take hands over the run of consecutive events at the queue's head, up
// to limit. s.mu is held.
func (s *LiveSource) take(limit int) []lake.Message {
	n := 1
	for n < len(s.queue) && n < limit && s.queue[n].Seq == s.queue[n-1].Seq+1 {
		n++
	}
	out := make([]lake.Message, n)
	copy(out, s.queue)
	s.next = out[n-1].Seq + 1
	s.few = n < max(limit/4, 1) && n == len(s.queue)
	s.dropBefore(s.next)
	return out
}

// dropBefore forgets the queued events before seq. s.mu is held.
func (s *LiveSource) dropBefore(seq uint64) {
	i := 0
	for i < len(s.queue) && s.queue[i].Seq < seq {
		s.bytes -= len(s.queue[i].Data)
		i++
	}
	if i > 0 {
		n := copy(s.queue, s.queue[i:])
		clear(s.queue[n:]) // let go of the payloads handed over
		s.queue = s.queue[:n]
	}
}

// catchUp reads the stream through the consumer, handing over only what
// was not handed over yet.
func (s *LiveSource) catchUp(ctx context.Context, b *BatchSource, limit int, wait time.Duration) ([]lake.Message, error) {
	msgs, err := b.Fetch(ctx, limit, max(wait, 0))
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(msgs) && msgs[i].Seq < s.next {
		i++
	}
	msgs = msgs[i:]
	if len(msgs) > 0 {
		s.next = msgs[len(msgs)-1].Seq + 1
	}
	return msgs, err
}

// resume starts catching up at the next sequence, with a reader of its
// own: an ephemeral consumer that is never acknowledged (the server keeps
// no state of what it delivered) and goes away a minute after its last
// pull if it is not deleted first.
func (s *LiveSource) resume(ctx context.Context) error {
	s.mu.Lock()
	next := s.next
	s.mu.Unlock()
	cons, err := s.js.CreateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
		Description:       "Plinth data lake, catching up",
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("nats: reading %s from %d: %w", s.stream, next, err)
	}
	s.mu.Lock()
	s.reader = &BatchSource{cons: cons, noAck: true}
	s.mu.Unlock()
	return nil
}

// dropReader deletes a reader's consumer; one left behind goes away by
// itself after a minute.
func (s *LiveSource) dropReader(r *BatchSource) {
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.js.DeleteConsumer(ctx, s.stream, r.cons.CachedInfo().Name)
}

// Ack records that every event up to seq, the last one Fetch returned, is
// landed: the durable consumer is recreated at the next event.
func (s *LiveSource) Ack(ctx context.Context, seq uint64) error {
	if err := s.js.DeleteConsumer(ctx, s.stream, s.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("nats: moving the consumer %s of %s: %w", s.durable, s.stream, err)
	}
	cc := batchConsumerConfig(s.durable, time.Minute)
	cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cc.OptStartSeq = seq + 1
	if _, err := s.js.CreateOrUpdateConsumer(ctx, s.stream, cc); err != nil {
		return fmt.Errorf("nats: moving the consumer %s of %s: %w", s.durable, s.stream, err)
	}
	return nil
}
