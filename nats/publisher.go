package nats

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
)

// DuplicateWindow is the duplicate window of the streams Publisher creates:
// how long JetStream remembers a Nats-Msg-Id and drops a message that
// repeats it (JetStream's default). A relay that takes over, or starts
// again, asks the stream for what is there already (Published) before it
// publishes, so the window only has to cover a relay's own retries after
// a publish whose acknowledgement did not come. JetStream keeps every id
// of the window in memory (about 200 bytes an event: at 2,000 events/s,
// 48 MB for two minutes, 240 MB for ten), in serve's process when the
// NATS server is embedded.
const DuplicateWindow = 2 * time.Minute

// Connect connects to an external NATS server or cluster ("nats://host:4222",
// several URLs separated by commas), reconnecting for ever after.
func Connect(serverURL string) (*natsgo.Conn, error) {
	nc, err := natsgo.Connect(serverURL,
		natsgo.Name("plinth"),
		natsgo.MaxReconnects(-1),
		natsgo.Timeout(5*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to NATS at %s: %w (check --nats-url and that the server is running)", RedactURL(serverURL), err)
	}
	return nc, nil
}

// RedactURL hides passwords and tokens in a NATS URL list, for messages.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		} else {
			u.User = url.User("***")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// StreamName is the stream of a domain's events in an environment:
// PLINTH_<ENV>_<DOMAIN>, upper case, hyphens as underscores
// (PLINTH_PRODUCTION_BENEFIT_CLAIMS).
func StreamName(env, domain string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace("PLINTH_" + env + "_" + domain))
}

// Publisher publishes outbox entries to JetStream; it implements
// plinth.Publisher.
//
// Entries are published asynchronously (pipelined) and Publish waits for
// every acknowledgement, so a batch costs about one round trip. Order is
// kept even when a message in the middle of a batch fails: each message
// after the first of its stream carries Nats-Expected-Last-Msg-Id, the
// previous entry's event ID, so the stream refuses it unless its
// predecessor was stored, and what a failed batch leaves in the stream is
// always a prefix of it. The relay then publishes the whole batch again;
// the stored prefix is dropped as duplicates. After a failure the next
// batch is published one message at a time.
type Publisher struct {
	js        jetstream.JetStream
	env       string
	retention Retention
	replicas  int // of new streams, and of existing ones when set

	mu      sync.Mutex
	streams map[string]bool // domains whose stream is known to exist
	careful bool            // publish one at a time until a batch succeeds

	followMu  sync.RWMutex
	followers map[string]*follower // by stream (Follow)
}

// follower is a stream's Follow callback.
type follower struct{ fn func(lake.Message) }

// Follow calls fn with every message the publisher stores in the stream
// from now on (not with duplicates JetStream dropped), in stream order,
// until the returned stop is called: the data lake inside serve lands
// them without reading them back (LiveSource). fn must not block or keep
// the publisher waiting, and must not change the message's Data. One
// follower per stream.
func (p *Publisher) Follow(stream string, fn func(lake.Message)) (stop func()) {
	p.followMu.Lock()
	defer p.followMu.Unlock()
	if p.followers == nil {
		p.followers = map[string]*follower{}
	}
	f := &follower{fn}
	p.followers[stream] = f
	return func() {
		p.followMu.Lock()
		defer p.followMu.Unlock()
		if p.followers[stream] == f { // not a later follower's
			delete(p.followers, stream)
		}
	}
}

// stored hands what JetStream stored of e to the stream's follower.
func (p *Publisher) stored(e plinth.OutboxEntry, ack *jetstream.PubAck) {
	if ack == nil || ack.Duplicate {
		return
	}
	p.followMu.RLock()
	f := p.followers[ack.Stream]
	p.followMu.RUnlock()
	if f != nil {
		f.fn(lake.Message{Seq: ack.Sequence, Subject: e.Subject, Data: e.Payload})
	}
}

// NewPublisher returns a publisher for the environment's events and makes
// sure each domain has its stream: created when missing, with file storage,
// the duplicate window and the retention (DefaultRetention unless
// WithRetention says otherwise) and one replica (WithReplicas); an existing
// stream keeps its storage (and its replicas, unless WithReplicas) but gains the domain's subjects and is
// updated to the retention, so a changed setting applies on the next start.
func NewPublisher(ctx context.Context, nc *natsgo.Conn, env string, domains []*plinth.Domain, opts ...Option) (*Publisher, error) {
	if env == "" || strings.ContainsAny(env, ". *>") {
		return nil, fmt.Errorf("nats: environment %q cannot be a subject token", env)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(8192),
		jetstream.WithPublishAsyncTimeout(30*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	p := &Publisher{js: js, env: env, streams: map[string]bool{}, retention: DefaultRetention}
	for _, o := range opts {
		o(p)
	}
	if err := p.retention.Check(); err != nil {
		return nil, err
	}
	if err := p.Check(ctx); err != nil {
		return nil, err
	}
	for _, d := range domains {
		if err := p.EnsureStream(ctx, d.Name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// JetStream is the publisher's JetStream context.
func (p *Publisher) JetStream() jetstream.JetStream { return p.js }

// Environment is the environment the publisher publishes for.
func (p *Publisher) Environment() string { return p.env }

// Check reports whether JetStream answers, for readiness checks.
func (p *Publisher) Check(ctx context.Context) error {
	nc := p.js.Conn()
	if !nc.IsConnected() {
		return fmt.Errorf("nats: not connected (%s)", nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := p.js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("nats: JetStream is not enabled on the NATS server at %s (start it with -js)", RedactURL(nc.ConnectedUrlRedacted()))
		}
		return fmt.Errorf("nats: JetStream does not answer: %w", err)
	}
	return nil
}

// Ping is Check.
func (p *Publisher) Ping(ctx context.Context) error { return p.Check(ctx) }

// EnsureStream makes sure the domain's stream exists and captures its
// subjects.
func (p *Publisher) EnsureStream(ctx context.Context, domain string) error {
	p.mu.Lock()
	known := p.streams[domain]
	p.mu.Unlock()
	if known {
		return nil
	}
	name := StreamName(p.env, domain)
	subject := plinth.DomainSubjects(p.env, domain)
	want := jetstream.StreamConfig{
		Name:        name,
		Description: fmt.Sprintf("Plinth change events of the %s domain in %s", domain, p.env),
		Subjects:    []string{subject},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    max(p.replicas, 1),
	}
	p.retention.apply(&want)
	for attempt := 0; ; attempt++ {
		s, err := p.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = p.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // created meanwhile by another process
			}
			if err != nil {
				return fmt.Errorf("nats: creating stream %s for %s: %w", name, subject, err)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("nats: looking up stream %s: %w", name, err)
		}
		cur := s.CachedInfo().Config
		update := false
		if !slices.Contains(cur.Subjects, subject) {
			cur.Subjects = append(cur.Subjects, subject)
			update = true
		}
		if p.retention.apply(&cur) {
			update = true
		}
		if p.replicas > 0 && cur.Replicas != p.replicas {
			cur.Replicas = p.replicas // a cluster scales the stream up or down
			update = true
		}
		if update {
			if _, err := p.js.UpdateStream(ctx, cur); err != nil {
				return fmt.Errorf("nats: updating stream %s: %w", name, err)
			}
		}
		break
	}
	p.mu.Lock()
	p.streams[domain] = true
	p.mu.Unlock()
	return nil
}

// Publish publishes the entries in order and waits until JetStream has
// stored all of them. See the type's documentation for how order survives
// a failure.
func (p *Publisher) Publish(ctx context.Context, entries []plinth.OutboxEntry) error {
	prefix := plinth.SubjectPrefix(p.env)
	for _, e := range entries {
		if !strings.HasPrefix(e.Subject, prefix+e.Domain+".") {
			return fmt.Errorf("nats: event %s has subject %q, outside plinth.%s.%s.>", e.EventID, e.Subject, p.env, e.Domain)
		}
		if err := p.EnsureStream(ctx, e.Domain); err != nil {
			return err
		}
	}
	p.mu.Lock()
	careful := p.careful
	p.mu.Unlock()
	var err error
	if careful {
		err = p.publishOneByOne(ctx, entries)
	} else {
		err = p.publishPipelined(ctx, entries)
	}
	p.mu.Lock()
	p.careful = err != nil
	p.mu.Unlock()
	return err
}

func message(e plinth.OutboxEntry) *natsgo.Msg {
	return &natsgo.Msg{Subject: e.Subject, Data: e.Payload, Header: natsgo.Header{}}
}

func (p *Publisher) publishPipelined(ctx context.Context, entries []plinth.OutboxEntry) error {
	last := map[string]string{} // domain → event ID of its previous entry
	futures := make([]jetstream.PubAckFuture, 0, len(entries))
	var sendErr error
	for _, e := range entries {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(e.EventID)}
		if prev, ok := last[e.Domain]; ok {
			opts = append(opts, jetstream.WithExpectLastMsgID(prev))
		}
		last[e.Domain] = e.EventID
		f, err := p.js.PublishMsgAsync(message(e), opts...)
		if err != nil {
			sendErr = fmt.Errorf("publishing event %s: %w", e.EventID, err)
			break
		}
		futures = append(futures, f)
	}
	// Wait for what was sent, even after a send error, so that nothing of
	// this batch is still in flight when the caller retries.
	var firstErr error
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			p.stored(entries[i], ack)
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publishing event %s: %w", entries[i].EventID, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return sendErr
}

func (p *Publisher) publishOneByOne(ctx context.Context, entries []plinth.OutboxEntry) error {
	for _, e := range entries {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ack, err := p.js.PublishMsg(pctx, message(e), jetstream.WithMsgID(e.EventID))
		cancel()
		if err != nil {
			return fmt.Errorf("publishing event %s: %w", e.EventID, err)
		}
		p.stored(e, ack)
	}
	return nil
}
