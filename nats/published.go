package nats

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
)

// tailSlack is how many messages in a row that are not pending Published
// passes, looking back from a stream's newest, before it stops.
const tailSlack = 64

// Published returns the IDs of the pending entries JetStream holds
// already (plinth.PublishedFinder). A batch a relay published and did not
// mark is at the tail of its streams: Publish stores a prefix of a batch
// and nothing after it, and relays publish pending entries oldest first.
// So Published reads each stream back from its newest message, over at
// most the stream's pending entries, and stops once it has passed
// tailSlack messages in a row that are not pending (entries marked sent
// before).
func (p *Publisher) Published(ctx context.Context, pending []plinth.OutboxEntry) ([]string, error) {
	byStream := map[string]map[string]bool{}
	for _, e := range pending {
		name := StreamName(p.env, e.Domain)
		if byStream[name] == nil {
			byStream[name] = map[string]bool{}
		}
		byStream[name][e.EventID] = true
	}
	var found []string
	for name, ids := range byStream {
		got, err := p.publishedIn(ctx, name, ids)
		if err != nil {
			return nil, err
		}
		found = append(found, got...)
	}
	return found, nil
}

// publishedIn returns the ids found at the tail of one stream.
func (p *Publisher) publishedIn(ctx context.Context, name string, ids map[string]bool) ([]string, error) {
	s, err := p.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats: looking up stream %s: %w", name, err)
	}
	state := s.CachedInfo().State
	var found []string
	for seq, missed := state.LastSeq, 0; seq >= max(state.FirstSeq, 1) && len(found) < len(ids) && missed < tailSlack; seq-- {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			return nil, fmt.Errorf("nats: reading message %d of stream %s: %w", seq, name, err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); ids[id] {
			found = append(found, id)
			missed = 0
		} else {
			missed++
		}
	}
	return found, nil
}
