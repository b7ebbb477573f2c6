package http

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plinth-data/plinth"
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
	// secrets are the values of the request's body, which may be personal
	// data, masked in its log lines; bodies are the bodies read, whose
	// values join them only when a log line asks (few requests log any,
	// and noting every value of a create's body was 2 % of serve's CPU).
	mu      sync.Mutex
	secrets plinth.Secrets
	bodies  [][]byte
}

// noteBody notes the values of a decoded request body, so its log lines
// mask them.
func (i *requestInfo) noteBody(doc map[string]any) {
	i.mu.Lock()
	i.secrets.AddDocument(doc)
	i.mu.Unlock()
}

// noteRawBody notes a request body as read (valid JSON; the caller must
// not change it after), so its log lines mask its values.
func (i *requestInfo) noteRawBody(body []byte) {
	i.mu.Lock()
	i.bodies = append(i.bodies, body)
	i.mu.Unlock()
}

// requestSecrets are the values a log line about r masks: those of its
// body, its query parameters (filter values) and the ids in its path (the
// route template is what is logged, never the path).
func requestSecrets(r *http.Request) []string {
	info := infoFrom(r.Context())
	var s plinth.Secrets
	for _, vs := range r.URL.Query() {
		s.Add(vs...)
	}
	if rc := chi.RouteContext(r.Context()); rc != nil {
		for i, k := range rc.URLParams.Keys {
			if k == "id" && i < len(rc.URLParams.Values) {
				s.Add(rc.URLParams.Values[i])
			}
		}
	}
	// Unmatched or not yet routed: any segment after /api/v1/{plural}/.
	if segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/"); len(segs) > 3 {
		for _, seg := range segs[3:] {
			if u, err := url.PathUnescape(seg); err == nil {
				seg = u
			}
			s.Add(seg)
		}
	}
	info.mu.Lock()
	for _, b := range info.bodies {
		if doc, err := plinth.DecodeJSONObject(b); err == nil {
			info.secrets.AddDocument(doc)
		}
	}
	info.bodies = nil
	s.Add(info.secrets.Values()...)
	info.mu.Unlock()
	return s.Values()
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
	// Building the request's masking logger costs allocations on every
	// request; at the usual production level (warn) the line is dropped.
	if !s.logger.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	s.log(r).Info("request", "method", r.Method, "route", route, "status", rec.status,
		"durationMs", float64(elapsed.Microseconds())/1000, "bytes", rec.bytes)
}
