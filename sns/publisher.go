// Package sns publishes Plinth's change events to AWS SNS: one FIFO topic
// per domain, the same envelope as on NATS as the message, the entity id
// as the message group (so each record's events arrive in order) and the
// event id as the deduplication id (so a relay publishing a batch again
// after a failure doubles nothing). Listeners subscribe SQS FIFO queues
// to the topic, the organisation's SNS → SQS pattern.
//
// A bus URL names the topics:
//
//	sns://REGION/ACCOUNT[?prefix=plinth-][&endpoint=URL]
//
// The topic of a domain in an environment is
// arn:aws:sns:REGION:ACCOUNT:{prefix}{env}-{domain}.fifo (default prefix
// "plinth-"), e.g. plinth-production-residents.fifo; endpoint points at an
// SNS-compatible emulator. Credentials come from the usual AWS chain (the
// Lambda's or instance's role).
package sns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/plinth-data/plinth"
)

// IsURL reports whether s is an sns:// bus URL.
func IsURL(s string) bool { return strings.HasPrefix(s, "sns://") }

// parallel bounds how many message groups (entities) a batch publishes
// to at once; one group's events go one after another.
const parallel = 16

// Publisher publishes outbox entries to the domains' FIFO topics; it
// implements plinth.Publisher.
type Publisher struct {
	client  *awssns.Client
	env     string
	arn     string // topic ARN up to the domain: arn:aws:sns:REGION:ACCOUNT:{prefix}{env}-
	domains []string
}

// Options are what the URL does not carry.
type Options struct {
	// Credentials, when set, replace the AWS default chain (tests,
	// emulators).
	Credentials aws.CredentialsProvider
}

var accountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Open returns a publisher for env's events of the domains, at the topics
// the URL names.
func Open(ctx context.Context, rawURL, env string, domains []*plinth.Domain, opts Options) (*Publisher, error) {
	u, err := url.Parse(rawURL)
	account := ""
	if err == nil {
		account = strings.Trim(u.Path, "/")
	}
	if err != nil || u.Scheme != "sns" || u.Host == "" || !accountRE.MatchString(account) {
		return nil, fmt.Errorf("event bus %q: use sns://REGION/ACCOUNT (a 12-digit AWS account id), e.g. sns://eu-west-2/123456789012", rawURL)
	}
	q := u.Query()
	prefix := "plinth-"
	if q.Has("prefix") {
		prefix = q.Get("prefix")
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(u.Host)}
	if opts.Credentials != nil {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("event bus %s: AWS configuration: %w", rawURL, err)
	}
	client := awssns.NewFromConfig(cfg, func(o *awssns.Options) {
		if ep := q.Get("endpoint"); ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
	})
	p := &Publisher{client: client, env: env, arn: fmt.Sprintf("arn:aws:sns:%s:%s:%s%s-", u.Host, account, prefix, env)}
	for _, d := range domains {
		p.domains = append(p.domains, d.Name)
	}
	return p, nil
}

// TopicARN is the FIFO topic of a domain's events.
func (p *Publisher) TopicARN(domain string) string { return p.arn + domain + ".fifo" }

// Check reports whether SNS answers and every domain's topic exists (SNS
// does not create them: Terraform does).
func (p *Publisher) Check(ctx context.Context) error {
	want := map[string]bool{}
	for _, d := range p.domains {
		want[p.TopicARN(d)] = true
	}
	pages := awssns.NewListTopicsPaginator(p.client, &awssns.ListTopicsInput{})
	for pages.HasMorePages() && len(want) > 0 {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("sns: listing topics: %w", err)
		}
		for _, t := range page.Topics {
			delete(want, aws.ToString(t.TopicArn))
		}
	}
	for arn := range want {
		return fmt.Errorf("sns: topic %s does not exist (create the domain's FIFO topic: deploy/terraform)", arn)
	}
	return nil
}

// Publish publishes the entries: each entity's in order, different
// entities side by side. It returns once SNS has accepted every one, or
// the first error; the relay then publishes the batch again and SNS drops
// what it already has by deduplication id (within its five-minute window).
func (p *Publisher) Publish(ctx context.Context, entries []plinth.OutboxEntry) error {
	groups := map[string][]plinth.OutboxEntry{}
	var order []string
	for _, e := range entries {
		g, err := entityID(e)
		if err != nil {
			return err
		}
		if groups[g] == nil {
			order = append(order, g)
		}
		groups[g] = append(groups[g], e)
	}
	// After a failure no new message is sent, but those on their way are
	// answered before Publish returns, so nothing of this batch is still in
	// flight when the relay publishes it again.
	var (
		wg       sync.WaitGroup
		once     sync.Once
		failed   atomic.Bool
		firstErr error
		slots    = make(chan struct{}, parallel)
	)
	for _, g := range order {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			for _, e := range groups[g] {
				if failed.Load() {
					return
				}
				if err := p.publish(ctx, g, e); err != nil {
					once.Do(func() { firstErr = err; failed.Store(true) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (p *Publisher) publish(ctx context.Context, group string, e plinth.OutboxEntry) error {
	eventType := e.Subject[strings.LastIndexByte(e.Subject, '.')+1:]
	_, err := p.client.Publish(ctx, &awssns.PublishInput{
		TopicArn:               aws.String(p.TopicARN(e.Domain)),
		Message:                aws.String(string(e.Payload)),
		MessageGroupId:         aws.String(group),
		MessageDeduplicationId: aws.String(e.EventID),
		// For subscription filter policies: the NATS subject and its last
		// token (created, updated, deleted).
		MessageAttributes: map[string]types.MessageAttributeValue{
			"subject":   {DataType: aws.String("String"), StringValue: aws.String(e.Subject)},
			"eventType": {DataType: aws.String("String"), StringValue: aws.String(eventType)},
		},
	})
	if err != nil {
		var nf *types.NotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("sns: publishing event %s: topic %s does not exist: %w", e.EventID, p.TopicARN(e.Domain), err)
		}
		return fmt.Errorf("sns: publishing event %s to %s: %w", e.EventID, p.TopicARN(e.Domain), err)
	}
	return nil
}

// entityID is the envelope's entityId: the message group, at most 128
// characters as SNS allows.
func entityID(e plinth.OutboxEntry) (string, error) {
	var ev struct {
		EntityID string `json:"entityId"`
	}
	if err := json.Unmarshal(e.Payload, &ev); err != nil || ev.EntityID == "" {
		return "", fmt.Errorf("sns: event %s has no entityId to group by", e.EventID)
	}
	if len(ev.EntityID) > 128 {
		return ev.EntityID[:128], nil
	}
	return ev.EntityID, nil
}
