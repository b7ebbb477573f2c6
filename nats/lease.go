package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the JetStream key-value bucket that keeps leases.
const LeaseBucket = "PLINTH_LEASES"

// KVLease is a lease kept in a JetStream key-value bucket, for work that
// one process at a time does on a stream: the data lake's landing
// (lake.Lease). Each change is a compare-and-set on the key's revision, so
// of two processes acquiring at once one wins. Expiry needs no shared
// clock: a standby counts a lease as expired when its revision has not
// changed for the lease's TTL by the standby's own clock.
type KVLease struct {
	kv  jetstream.KeyValue
	key string

	mu     sync.Mutex
	seen   uint64    // the revision last read
	seenAt time.Time // when it was first read
}

// NewKVLease returns the named lease (letters, digits, - and _), creating
// the bucket when needed.
func NewKVLease(ctx context.Context, js jetstream.JetStream, name string) (*KVLease, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket,
		Description: "Plinth leases: one active process per piece of work"})
	if err != nil {
		return nil, fmt.Errorf("nats: opening the lease bucket: %w", err)
	}
	return &KVLease{kv: kv, key: name}, nil
}

// Acquire makes holder the holder for ttl, or renews its lease; false
// while another holder's lease has not expired.
func (l *KVLease) Acquire(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	value := []byte(strconv.FormatInt(int64(ttl), 10) + " " + holder)
	entry, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = l.kv.Create(ctx, l.key, value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return err == nil, l.wrap(err)
	}
	if err != nil {
		return false, l.wrap(err)
	}
	owner, theirs := parseLease(entry.Value())
	if owner != "" && owner != holder && !l.expired(entry.Revision(), theirs) {
		return false, nil
	}
	_, err = l.kv.Update(ctx, l.key, value, entry.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil // another process changed it first
	}
	return err == nil, l.wrap(err)
}

// Release gives the lease up when holder holds it.
func (l *KVLease) Release(ctx context.Context, holder string) error {
	entry, err := l.kv.Get(ctx, l.key)
	if err != nil {
		return l.wrap(err)
	}
	if owner, _ := parseLease(entry.Value()); owner != holder {
		return nil
	}
	_, err = l.kv.Update(ctx, l.key, []byte("0 "), entry.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return l.wrap(err)
}

// expired reports whether revision rev has stood unchanged for ttl.
func (l *KVLease) expired(rev uint64, ttl time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev != l.seen {
		l.seen, l.seenAt = rev, time.Now()
	}
	return time.Since(l.seenAt) >= ttl
}

func (l *KVLease) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("nats: lease %s: %w", l.key, err)
}

// parseLease reads "<ttl ns> <holder>"; the holder is "" once released.
func parseLease(v []byte) (holder string, ttl time.Duration) {
	n, h, _ := strings.Cut(string(v), " ")
	d, _ := strconv.ParseInt(n, 10, 64)
	return h, time.Duration(d)
}

// LakeLeaseName is the name of the lease of the lake's landing of a
// stream through a durable consumer.
func LakeLeaseName(stream, durable string) string { return "lake_" + stream + "_" + durable }
