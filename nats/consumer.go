package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
)

// HandlerFunc handles one event. Returning an error asks for the event
// again later (after the back-off); returning nil acknowledges it.
type HandlerFunc func(ctx context.Context, ev plinth.Event) error

// ConsumerConfig describes a listener's durable subscription.
type ConsumerConfig struct {
	// Stream is the domain's stream, such as PLINTH_PRODUCTION_RESIDENTS
	// (package nats: StreamName).
	Stream string
	// Durable names the subscription; the server remembers how far it has
	// got, so a listener that restarts carries on where it stopped. Use one
	// name per listener (several instances of one listener share it and
	// share the work).
	Durable string
	// Subjects narrow the subscription, such as
	// "plinth.production.residents.residents.*"; empty means the whole
	// stream. More than one subject needs NATS server 2.10 or later.
	Subjects []string

	// Handlers handle events by eventType ("ResidentUpdatedEvent"); Handler
	// handles every other event. Events that neither handles are logged
	// and skipped (acknowledged).
	Handlers map[string]HandlerFunc
	Handler  HandlerFunc

	// MaxDeliver is how many times an event is tried before it goes to the
	// dead-letter subject; default 5.
	MaxDeliver int
	// Backoff is how long to wait before the 1st, 2nd … retry; the last
	// value repeats. Default 1s, 5s, 30s, 1m.
	Backoff []time.Duration
	// AckWait is how long an event may wait in the listener, fetched but
	// not yet acknowledged, before the server assumes the listener died and
	// delivers it again; default 30s.
	AckWait time.Duration
	// Prefetch is how many events are fetched ahead of the handler;
	// default 16. Keep Prefetch times a handler's typical time well under
	// AckWait.
	Prefetch int
	// DeadLetterSubject receives events that failed MaxDeliver times, with
	// headers saying why (see the Plinth-Dead-Letter-* constants); they are
	// then acknowledged. A stream must capture the subject, so that dead
	// letters are kept; Consume checks this when it starts. Empty means
	// failed events are logged and dropped (terminated).
	DeadLetterSubject string

	// Seen remembers which events were handled, so that an event delivered
	// twice (a redelivery after a lost acknowledgement, or a duplicate
	// publish outside JetStream's duplicate window) is handled once. Default
	// an in-memory NewMemorySeen(100_000), which forgets on restart; a
	// listener that must never handle an event twice uses a durable one,
	// such as a table of event IDs written in the same transaction as the
	// handler's own changes.
	Seen Idempotency

	// Logger receives skipped, failed and dead-lettered events; default
	// slog.Default().
	Logger *slog.Logger
}

// Headers Consume sets on a dead letter, next to the event's own headers.
const (
	HeaderDeadLetterReason     = "Plinth-Dead-Letter-Reason"     // the handler's last error
	HeaderDeadLetterDeliveries = "Plinth-Dead-Letter-Deliveries" // how many times it was tried
	HeaderDeadLetterStream     = "Plinth-Dead-Letter-Stream"     // the stream it came from
	HeaderDeadLetterSequence   = "Plinth-Dead-Letter-Sequence"   // its sequence in that stream
	HeaderDeadLetterConsumer   = "Plinth-Dead-Letter-Consumer"   // the durable that gave up
	HeaderDeadLetterSubject    = "Plinth-Dead-Letter-Subject"    // its original subject
	HeaderEventID              = "Plinth-Event-Id"               // the event's id
)

func (c ConsumerConfig) withDefaults() (ConsumerConfig, error) {
	if c.Stream == "" || c.Durable == "" {
		return c, errors.New("nats.Consume: set Stream and Durable")
	}
	if c.Handler == nil && len(c.Handlers) == 0 {
		return c, errors.New("nats.Consume: set Handler or Handlers")
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, time.Minute}
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Prefetch <= 0 {
		c.Prefetch = 16
	}
	if c.Seen == nil {
		c.Seen = NewMemorySeen(100_000)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Consume runs a durable subscription until ctx is cancelled, then returns
// nil. It creates the durable pull consumer (or updates its settings),
// takes events one at a time in stream order and hands each to its handler:
//
//   - an event whose ID Seen already knows is acknowledged without calling
//     a handler;
//   - an event no handler takes is logged and acknowledged;
//   - a handler's success marks the event seen and acknowledges it;
//   - a handler's error asks for the event again after the back-off; after
//     MaxDeliver tries the event is published to DeadLetterSubject and
//     acknowledged.
//
// A message that is not a Plinth event goes to the dead-letter subject at
// once. Consume returns an error when it cannot set up the subscription.
func Consume(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if cfg.DeadLetterSubject != "" {
		if _, err := js.StreamNameBySubject(ctx, cfg.DeadLetterSubject); err != nil {
			return fmt.Errorf("nats.Consume: no stream keeps the dead-letter subject %s (create one that captures it): %w", cfg.DeadLetterSubject, err)
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "Plinth event listener",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		// Consume counts deliveries itself and dead-letters; the server
		// must not give up first.
		MaxDeliver:    -1,
		MaxAckPending: max(1000, cfg.Prefetch),
	}
	switch len(cfg.Subjects) {
	case 0:
	case 1:
		cc.FilterSubject = cfg.Subjects[0]
	default:
		cc.FilterSubjects = cfg.Subjects
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return fmt.Errorf("nats.Consume: creating the durable consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Prefetch))
	if err != nil {
		return fmt.Errorf("nats.Consume: subscribing to %s: %w", cfg.Stream, err)
	}
	stopped := context.AfterFunc(ctx, it.Stop)
	defer stopped()
	defer it.Stop()

	c := &consumer{js: js, cfg: cfg, log: cfg.Logger.With("component", "nats.Consume", "stream", cfg.Stream, "durable", cfg.Durable)}
	for {
		msg, err := it.Next()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			// Missed heartbeats and the like: the iterator recovers.
			c.log.Warn("waiting for events", "error", err)
			continue
		}
		c.handle(ctx, msg)
	}
}

type consumer struct {
	js  jetstream.JetStream
	cfg ConsumerConfig
	log *slog.Logger
}

func (c *consumer) handle(ctx context.Context, msg jetstream.Msg) {
	var delivered uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	ev, err := plinth.DecodeEvent(msg.Data())
	if err != nil {
		c.log.Error("not a Plinth event", "subject", msg.Subject(), "error", err)
		c.deadLetter(ctx, msg, "", err, delivered)
		return
	}
	log := c.log.With("eventId", ev.ID, "eventType", ev.EventType, "entityId", ev.EntityID)
	h := c.cfg.Handlers[ev.EventType]
	if h == nil {
		h = c.cfg.Handler
	}
	if h == nil {
		log.Info("no handler for this event type; skipping it")
		c.ack(log, msg)
		return
	}
	seen, err := c.cfg.Seen.Seen(ctx, ev.ID)
	if err != nil {
		log.Error("cannot tell whether the event was handled; retrying", "error", err)
		_ = msg.NakWithDelay(c.backoff(delivered))
		return
	}
	if seen {
		log.Debug("event already handled; skipping the duplicate")
		c.ack(log, msg)
		return
	}
	if err := c.call(ctx, h, ev); err != nil {
		if ctx.Err() != nil {
			// Shutting down: let the next run have it at once.
			_ = msg.Nak()
			return
		}
		if delivered >= uint64(c.cfg.MaxDeliver) {
			log.Error("handler failed; giving up", "error", err, "deliveries", delivered)
			c.deadLetter(ctx, msg, ev.ID, err, delivered)
			return
		}
		wait := c.backoff(delivered)
		log.Warn("handler failed; retrying", "error", err, "deliveries", delivered, "retryIn", wait)
		_ = msg.NakWithDelay(wait)
		return
	}
	if err := c.cfg.Seen.Mark(ctx, ev.ID); err != nil {
		log.Warn("cannot record the event as handled", "error", err)
	}
	c.ack(log, msg)
}

// call runs a handler, turning a panic into an error.
func (c *consumer) call(ctx context.Context, h HandlerFunc, ev plinth.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, ev)
}

func (c *consumer) backoff(delivered uint64) time.Duration {
	i := int(delivered) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(c.cfg.Backoff) {
		i = len(c.cfg.Backoff) - 1
	}
	return c.cfg.Backoff[i]
}

func (c *consumer) ack(log *slog.Logger, msg jetstream.Msg) {
	if err := msg.Ack(); err != nil {
		log.Warn("cannot acknowledge the event; it may come again", "error", err)
	}
}

// deadLetter publishes msg to the dead-letter subject and acknowledges it,
// or, without a dead-letter subject, terminates it.
func (c *consumer) deadLetter(ctx context.Context, msg jetstream.Msg, eventID string, cause error, delivered uint64) {
	if c.cfg.DeadLetterSubject == "" {
		_ = msg.TermWithReason(truncate(cause.Error(), 200))
		return
	}
	dl := natsgo.NewMsg(c.cfg.DeadLetterSubject)
	dl.Data = msg.Data()
	for k, vs := range msg.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			// JetStream's own headers (Nats-Msg-Id, Nats-Expected-…)
			// belong to the original publish, not to this one.
			continue
		}
		for _, v := range vs {
			dl.Header.Add(k, v)
		}
	}
	dl.Header.Set(HeaderDeadLetterReason, truncate(cause.Error(), 1000))
	dl.Header.Set(HeaderDeadLetterDeliveries, strconv.FormatUint(delivered, 10))
	dl.Header.Set(HeaderDeadLetterSubject, msg.Subject())
	dl.Header.Set(HeaderDeadLetterConsumer, c.cfg.Durable)
	if md, err := msg.Metadata(); err == nil {
		dl.Header.Set(HeaderDeadLetterStream, md.Stream)
		dl.Header.Set(HeaderDeadLetterSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	}
	var opts []jetstream.PublishOpt
	if eventID != "" {
		dl.Header.Set(HeaderEventID, eventID)
		// One dead letter per event and durable, even if this runs twice.
		opts = append(opts, jetstream.WithMsgID("dead-letter:"+c.cfg.Durable+":"+eventID))
	}
	if _, err := c.js.PublishMsg(ctx, dl, opts...); err != nil {
		c.log.Error("cannot publish the dead letter; retrying later", "subject", c.cfg.DeadLetterSubject, "error", err)
		_ = msg.NakWithDelay(c.backoff(delivered))
		return
	}
	if err := msg.Ack(); err != nil {
		c.log.Warn("cannot acknowledge the dead-lettered event", "error", err)
	}
}

// truncate shortens s to about n bytes and makes it fit a header value:
// one line of valid UTF-8.
func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
