package http

import (
	"context"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// CorrelationHeader carries the id that ties a request to its logs, audit
// records and events.
const CorrelationHeader = "x-correlation-id"

type correlationKey struct{}

// correlationRE limits accepted ids to safe printable tokens, so a client
// cannot inject anything into logs.
var correlationRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// CorrelationID returns the request's correlation id.
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// withCorrelation accepts the caller's x-correlation-id, or generates one,
// and echoes it on the response.
func withCorrelation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(CorrelationHeader)
		if !correlationRE.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set(CorrelationHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), correlationKey{}, id)))
	})
}

// requestInfo is what the middleware learns about a request as it passes:
// the route template the authorizer matched (so 401, 403 and 405 answers are
// labelled by route too) and whether the caller may read the entity's
// records.
type requestInfo struct {
	route   string
	mayRead bool
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	i, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	if i == nil {
		return &requestInfo{mayRead: true}
	}
	return i
}

// statusRecorder remembers the status and size of a response.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (rec *statusRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (to flush a
// streamed report and push its write deadline).
func (rec *statusRecorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *statusRecorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += n
	return n, err
}

// metrics holds the Prometheus collectors of the HTTP layer.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plinth_http_requests_total",
			Help: "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "plinth_http_request_duration_seconds",
			Help:    "HTTP request latency by route template, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method", "status"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observe logs every request and counts it. Logs carry the route template,
// never the path or query, which may hold personal data.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		info := &requestInfo{mayRead: s.authz == nil}
		r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
		defer func() {
			if p := recover(); p == http.ErrAbortHandler {
				// A streamed answer that failed part-way: the connection is
				// cut so the client sees a truncated transfer, not a clean
				// end. The handler logged why.
				s.countRequest(r, rec, info, start)
				panic(p)
			} else if p != nil {
				s.log(r).Error("panic while serving request", "panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeProblem(rec, r, http.StatusInternalServerError, "An unexpected error occurred; quote correlation id "+CorrelationID(r.Context())+" when reporting it.")
				}
			}
			s.countRequest(r, rec, info, start)
		}()
		next.ServeHTTP(rec, r)
	})
}

// countRequest counts and logs a request, by its route template.
func (s *Server) countRequest(r *http.Request, rec *statusRecorder, info *requestInfo, start time.Time) {
	route := info.route
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		route = rc.RoutePattern()
	}
	if route == "" {
		route = "unmatched"
	}
	status := strconv.Itoa(rec.status)
	elapsed := time.Since(start)
	s.metrics.requests.WithLabelValues(route, r.Method, status).Inc()
	s.metrics.duration.WithLabelValues(route, r.Method, status).Observe(elapsed.Seconds())
	s.log(r).Info("request", "method", r.Method, "route", route, "status", rec.status,
		"durationMs", float64(elapsed.Microseconds())/1000, "bytes", rec.bytes)
}
