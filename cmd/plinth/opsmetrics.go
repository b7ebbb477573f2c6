package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	plinthhttp "github.com/plinth-data/plinth/http"
)

// opsMetrics registers the gauges docs/operations.md sets alerts on,
// besides the HTTP ones: whether this process's relay is active and
// failing, how many events it published, and how many audit records wait
// to be chained.
func opsMetrics(reg *prometheus.Registry, relay *events.Relay, as plinth.AuditStore) {
	boolGauge := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "plinth_relay_active",
			Help: "1 while this process's outbox relay holds the lease and publishes."},
			func() float64 { return boolGauge(relay.Status().Active) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "plinth_relay_failing",
			Help: "1 while the relay's last attempt to publish failed (the outbox grows meanwhile)."},
			func() float64 { return boolGauge(relay.Status().LastError != nil) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "plinth_relay_published_events_total",
			Help: "Outbox entries this process's relay published."},
			func() float64 { return float64(relay.Status().Published) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "plinth_audit_unchained_records",
			Help: "Audit records appended and not yet linked into the hash chain (-1 when the store does not answer)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := as.CountUnchainedAudit(ctx)
				if err != nil {
					return -1
				}
				return float64(n)
			}),
	)
}

// countingAuditor counts the audit records that could not be written (the
// request then failed closed, or in development went on unaudited).
type countingAuditor struct {
	plinthhttp.Auditor
	failures prometheus.Counter
}

func newCountingAuditor(reg *prometheus.Registry, a plinthhttp.Auditor) *countingAuditor {
	c := &countingAuditor{Auditor: a, failures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "plinth_audit_write_failures_total",
		Help: "Audit records of requests that could not be written."})}
	reg.MustRegister(c.failures)
	return c
}

// Direct passes on the auditor's Direct, when it has one (a request that
// appends its own record and fails falls back to Record, which counts).
func (c *countingAuditor) Direct() (func(), bool) {
	if d, ok := c.Auditor.(interface{ Direct() (func(), bool) }); ok {
		return d.Direct()
	}
	return nil, false
}

func (c *countingAuditor) Record(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	out, err := c.Auditor.Record(ctx, rec)
	if err != nil {
		c.failures.Inc()
	}
	return out, err
}
