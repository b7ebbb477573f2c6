package nats

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retention bounds a domain's stream: JetStream drops the oldest events
// once they are older than MaxAge or the stream holds more than MaxBytes.
// The lake is the long-term record; the stream only needs to hold what
// consumers have not read yet, plus a margin to replay. Zero means no
// limit.
type Retention struct {
	MaxAge   time.Duration
	MaxBytes int64
	// Duplicates, when set, is the duplicate window of every stream, new
	// or existing. Zero gives new streams DuplicateWindow and raises a
	// shorter window of an existing one to it.
	Duplicates time.Duration
}

// DefaultRetention is seven days and 1 GiB per domain.
var DefaultRetention = Retention{MaxAge: 7 * 24 * time.Hour, MaxBytes: 1 << 30}

// Option changes how NewPublisher sets up streams.
type Option func(*Publisher)

// WithRetention sets the retention of the streams NewPublisher creates,
// and of existing streams, which are updated to it.
func WithRetention(r Retention) Option {
	return func(p *Publisher) { p.retention = r }
}

// WithReplicas sets how many servers of a cluster keep each stream (3
// survives the loss of one), for new streams and existing ones, which
// JetStream scales to it. Without it new streams have one replica and
// existing ones keep theirs.
func WithReplicas(n int) Option {
	return func(p *Publisher) { p.replicas = n }
}

// Check reports a negative limit.
func (r Retention) Check() error {
	if r.MaxAge < 0 || r.MaxBytes < 0 || r.Duplicates < 0 {
		return fmt.Errorf("nats: stream retention %s / %d bytes / duplicate window %s: must not be negative (0 is no limit, or the default window)", r.MaxAge, r.MaxBytes, r.Duplicates)
	}
	return nil
}

// apply sets the limits on a stream configuration and keeps the
// duplicate window within the age limit (JetStream refuses it longer).
// It reports whether anything changed.
func (r Retention) apply(c *jetstream.StreamConfig) bool {
	changed := c.MaxAge != r.MaxAge || c.MaxBytes != maxBytes(r) || c.Discard != jetstream.DiscardOld
	c.MaxAge, c.MaxBytes, c.Discard = r.MaxAge, maxBytes(r), jetstream.DiscardOld
	dup, exact := DuplicateWindow, r.Duplicates > 0
	if exact {
		dup = r.Duplicates
	}
	if r.MaxAge > 0 && r.MaxAge < dup {
		dup = r.MaxAge
	}
	if exact && c.Duplicates != dup || c.Duplicates < dup || r.MaxAge > 0 && c.Duplicates > r.MaxAge {
		c.Duplicates = dup
		changed = true
	}
	return changed
}

// maxBytes is JetStream's spelling of no limit: -1.
func maxBytes(r Retention) int64 {
	if r.MaxBytes == 0 {
		return -1
	}
	return r.MaxBytes
}
