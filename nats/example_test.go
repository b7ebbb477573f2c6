package nats_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	plinthnats "github.com/plinth-data/plinth/nats"
)

// A listener that suspends housing-benefit claims when a resident's date
// of death is recorded.
func ExampleConsume() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	nc, err := natsgo.Connect("nats://nats.internal:4222")
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	err = plinthnats.Consume(ctx, js, plinthnats.ConsumerConfig{
		Stream:   "PLINTH_PRODUCTION_RESIDENTS",
		Durable:  "housing-benefits-listener",
		Subjects: []string{"plinth.production.residents.residents.updated"},
		Handlers: map[string]plinthnats.HandlerFunc{
			"ResidentUpdatedEvent": func(ctx context.Context, ev plinth.Event) error {
				if ev.EventData.NewData["dateOfDeath"] == nil {
					return nil // not a change this listener acts on
				}
				log.Printf("suspend claims of resident %s (version %d)", ev.EntityID, ev.EntityVersion)
				return nil // an error would retry the event after the back-off
			},
		},
		MaxDeliver:        5,
		Backoff:           []time.Duration{time.Second, 10 * time.Second, time.Minute},
		DeadLetterSubject: "dead.housing-benefits-listener",
	})
	if err != nil {
		log.Fatal(err)
	}
}
