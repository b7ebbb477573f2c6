// Package nats is Plinth's bus: NATS JetStream, either embedded in the
// plinth process (the default: no separate service to run) or an external
// server or cluster.
//
// StartEmbedded runs nats-server in process with JetStream file storage
// under the data directory and, unless asked, no TCP port; Connect dials an
// external server. Publisher implements the relay's Publisher over either: one
// stream per domain, PLINTH_<ENV>_<DOMAIN>, capturing
// plinth.<env>.<domain>.>, with a two-minute duplicate window so that a
// publish the relay retries is dropped by its Nats-Msg-Id (after a crash
// the relay asks the stream for what it holds: Published), and a
// retention (Retention: 7 days and 1 GiB by default) applied to new and
// existing streams.
//
// # Events
//
// Every committed change to a record produces one event, in the envelope of
// the widely used EntityEventSns shape plus Plinth's entityVersion and
// state:
//
//	{
//	  "id": "0190c3e4-…",                   a UUID (v7), also the Nats-Msg-Id
//	  "eventType": "ResidentUpdatedEvent",  <Entity>Created|Updated|DeletedEvent
//	  "sourceDomain": "residents",
//	  "sourceSystem": "plinth residents API",
//	  "version": "v1",
//	  "correlationId": "…",                 the request's x-correlation-id
//	  "dateTime": "2024-05-01T09:30:00.123456Z",
//	  "user": {"name": "…", "email": "…"},  the end user, or a service token's consumer
//	  "entityId": "4711",
//	  "eventData": {"oldData": {"lastName": "Smith"}, "newData": {"lastName": "Jones"}},
//	  "entityVersion": 5,
//	  "state": {"mosaicId": 4711, …, "version": 5, "createdAt": …, "updatedAt": …}
//	}
//
// An update carries only the changed top-level fields; a create has oldData
// null and newData the record; a delete has oldData the record and newData
// and state null. plinth.BuildEvent makes the event and its outbox entry; see it for
// the details.
//
// Events are published on the subject
// plinth.<env>.<domain>.<plural>.<created|updated|deleted>, such as
// plinth.production.residents.residents.updated, into one JetStream stream
// per domain, PLINTH_<ENV>_<DOMAIN> (package nats).
//
// # Listening
//
// Consume is a durable subscription for listener authors: per-message
// handlers by event type, idempotency by event ID, retry with back-off and
// a dead-letter subject after repeated failures. A listener in its own
// program:
//
//	nc, err := nats.Connect("nats://nats.internal:4222") // github.com/nats-io/nats.go
//	if err != nil { … }
//	defer nc.Close()
//	js, err := jetstream.New(nc) // github.com/nats-io/nats.go/jetstream
//	if err != nil { … }
//
//	err = nats.Consume(ctx, js, nats.ConsumerConfig{
//		Stream:   "PLINTH_PRODUCTION_RESIDENTS",
//		Durable:  "housing-benefits-listener",
//		Subjects: []string{"plinth.production.residents.residents.*"},
//		Handlers: map[string]nats.HandlerFunc{
//			"ResidentUpdatedEvent": func(ctx context.Context, ev plinth.Event) error {
//				if ev.EventData.NewData["dateOfDeath"] == nil {
//					return nil // no date of death recorded by this change
//				}
//				return claims.SuspendFor(ctx, ev.EntityID) // an error retries it
//			},
//		},
//		MaxDeliver:        5,
//		Backoff:           []time.Duration{time.Second, 10 * time.Second, time.Minute},
//		DeadLetterSubject: "dead.housing-benefits-listener", // kept by a stream of your own
//	})
//
// Events of other types (here ResidentCreatedEvent and ResidentDeletedEvent)
// are logged and skipped. Consume handles one event at a time, in stream
// order; run more instances with the same Durable to share the work. An
// event that fails is retried after its back-off while later events go
// ahead, so a listener that needs a strict per-record order compares
// entityVersion with the last version it applied.
//
// Delivery to a listener is at least once. JetStream drops duplicate
// publishes within the stream's duplicate window, and Consume's Seen
// (in memory by default) drops a redelivered event it has already handled;
// a listener that must never apply an event twice gives Consume a durable
// Idempotency, ideally one that records the event ID in the same
// transaction as its own change.
//
// Messages in the stream carry JetStream's publish headers (Nats-Msg-Id,
// Nats-Expected-Last-Msg-Id); a listener that forwards a message to
// another JetStream subject must drop the Nats-* headers first.
package nats
