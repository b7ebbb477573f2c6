package lambda

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// MaxResponseBytes is AWS Lambda's limit on a synchronous response (6 MB),
// less room for the JSON around the body. A larger answer (a big report)
// becomes a 500 problem saying so: export it from plinth serve or the lake.
const MaxResponseBytes = 6_000_000 - 64<<10

// API serves the Platform API from AWS Lambda: each invocation is an API
// Gateway event, REST API proxy (payload 1.0) or HTTP API and function URL
// (payload 2.0), turned into an http.Request for the same handler plinth
// serve runs, and its answer into the matching response. Pass it to
// lambda.StartHandler; it implements lambda.Handler.
type API struct {
	h   http.Handler
	log *slog.Logger
}

// NewAPI returns the adapter for h. It logs through slog.Default.
func NewAPI(h http.Handler) *API { return &API{h: h, log: slog.Default()} }

// Invoke answers one API Gateway event.
func (a *API) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var probe struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return nil, fmt.Errorf("plinth API: the event is not JSON: %w", err)
	}
	if probe.Version == "2.0" {
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("plinth API: reading an HTTP API event: %w", err)
		}
		req, err := requestV2(ctx, ev)
		if err != nil {
			return nil, err
		}
		return json.Marshal(a.serve(req).v2())
	}
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("plinth API: reading a REST API event: %w", err)
	}
	if ev.HTTPMethod == "" {
		return nil, fmt.Errorf("plinth API: the event is neither an API Gateway proxy event nor payload 2.0 (no httpMethod)")
	}
	req, err := requestV1(ctx, ev)
	if err != nil {
		return nil, err
	}
	return json.Marshal(a.serve(req).v1())
}

// requestV1 is the http.Request of a REST API proxy event.
func requestV1(ctx context.Context, ev events.APIGatewayProxyRequest) (*http.Request, error) {
	q := url.Values{}
	for k, vs := range ev.MultiValueQueryStringParameters {
		q[k] = vs
	}
	for k, v := range ev.QueryStringParameters {
		if _, ok := q[k]; !ok {
			q.Set(k, v)
		}
	}
	h := http.Header{}
	for k, vs := range ev.MultiValueHeaders {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	for k, v := range ev.Headers {
		if h.Get(k) == "" {
			h.Set(k, v)
		}
	}
	path := stripStage(ev.Path, ev.RequestContext.Stage, ev.Resource)
	rc := ev.RequestContext
	return newRequest(ctx, ev.HTTPMethod, path, q.Encode(), h, ev.Body, ev.IsBase64Encoded, rc.Identity.SourceIP, rc.RequestID)
}

// requestV2 is the http.Request of an HTTP API (payload 2.0) or function
// URL event.
func requestV2(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	h := http.Header{}
	for k, v := range ev.Headers {
		h.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		h.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	rc := ev.RequestContext
	// rawPath carries the stage unless it is $default; routeKey's path
	// ("GET /api/v1/residents/{id}") never does.
	route := ""
	if _, p, ok := strings.Cut(ev.RouteKey, " "); ok {
		route = p
	}
	path := stripStage(ev.RawPath, rc.Stage, route)
	return newRequest(ctx, rc.HTTP.Method, path, ev.RawQueryString, h, ev.Body, ev.IsBase64Encoded, rc.HTTP.SourceIP, rc.RequestID)
}

func newRequest(ctx context.Context, method, path, query string, h http.Header, body string, b64 bool, sourceIP, requestID string) (*http.Request, error) {
	raw := []byte(body)
	if b64 {
		var err error
		if raw, err = base64.StdEncoding.DecodeString(body); err != nil {
			return nil, fmt.Errorf("plinth API: the event's body is not base64: %w", err)
		}
	}
	if path == "" {
		path = "/"
	}
	u := &url.URL{Path: path, RawQuery: query}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("plinth API: %w", err)
	}
	req.Header = h
	req.Host = h.Get("Host")
	req.ContentLength = int64(len(raw))
	req.RemoteAddr = sourceIP + ":0"
	// API Gateway's request id names the request when the caller sent no
	// correlation id, so its logs and Plinth's audit record meet. HTTP API
	// ids are base64 ("Qg7aXjYELPEEJxw="): made URL-safe, unpadded.
	if h.Get("x-correlation-id") == "" && requestID != "" {
		h.Set("x-correlation-id", strings.NewReplacer("+", "-", "/", "_", "=", "").Replace(requestID))
	}
	return req, nil
}

// stripStage removes the stage API Gateway puts before the path on its
// execute-api endpoint, unless the route itself starts with that segment
// (see requestPath).
func stripStage(path, stage, route string) string {
	if path == "" {
		return ""
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if stage == "" || stage == "$default" {
		return path
	}
	prefix := "/" + stage
	if path != prefix && !strings.HasPrefix(path, prefix+"/") {
		return path
	}
	if route == prefix || strings.HasPrefix(route, prefix+"/") {
		// The route starts with the stage's name too: strip only when
		// the path has one segment more than the route.
		if strings.Contains(route, "+}") || strings.Count(path, "/") != strings.Count(route, "/")+1 {
			return path
		}
	}
	if path = strings.TrimPrefix(path, prefix); path == "" {
		path = "/"
	}
	return path
}

// serve runs the handler; a panic is the handler's to turn into a 500, as
// under net/http it would be the server's, so it is recovered here.
func (a *API) serve(req *http.Request) (w *buffered) {
	w = &buffered{header: http.Header{}}
	defer func() {
		if v := recover(); v != nil {
			a.log.ErrorContext(req.Context(), "plinth API: the handler panicked", "panic", fmt.Sprint(v))
			w = problemResponse(req, http.StatusInternalServerError, "Internal Server Error", "The request could not be answered.")
		}
	}()
	a.h.ServeHTTP(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len() > MaxResponseBytes {
		a.log.ErrorContext(req.Context(), "plinth API: the response exceeds Lambda's limit", "bytes", w.body.Len(), "path", req.URL.Path)
		w = problemResponse(req, http.StatusInternalServerError, "Response too large",
			fmt.Sprintf("The response (%d bytes) exceeds AWS Lambda's 6 MB limit. Page through the list, or export the report from plinth serve or the lake.", w.body.Len()))
	}
	return w
}

// problemResponse is a problem+json answer made here, outside the handler.
func problemResponse(req *http.Request, status int, title, detail string) *buffered {
	w := &buffered{header: http.Header{}, status: status}
	w.header.Set("Content-Type", "application/problem+json")
	cid := req.Header.Get("x-correlation-id")
	w.header.Set("x-correlation-id", cid)
	json.NewEncoder(&w.body).Encode(map[string]any{"status": status, "title": title, "detail": detail, "correlationId": cid})
	return w
}

// buffered is an http.ResponseWriter that keeps the whole answer, as
// Lambda sends it in one piece. Flush does nothing.
type buffered struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *buffered) Header() http.Header { return b.header }

func (b *buffered) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *buffered) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *buffered) Flush() {}

// encodedBody is the body as the event carries it: text as is, anything
// else (Parquet, gzip) in base64.
func (b *buffered) encodedBody() (string, bool) {
	if textual(b.header.Get("Content-Type")) && b.header.Get("Content-Encoding") == "" {
		return b.body.String(), false
	}
	return base64.StdEncoding.EncodeToString(b.body.Bytes()), true
}

func textual(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return contentType == ""
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		mt == "application/x-ndjson" || strings.HasSuffix(mt, "xml") || mt == "application/yaml"
}

func (b *buffered) v1() events.APIGatewayProxyResponse {
	body, b64 := b.encodedBody()
	res := events.APIGatewayProxyResponse{StatusCode: b.status, MultiValueHeaders: map[string][]string{}, Body: body, IsBase64Encoded: b64}
	for k, vs := range b.header {
		res.MultiValueHeaders[k] = vs
	}
	return res
}

func (b *buffered) v2() events.APIGatewayV2HTTPResponse {
	body, b64 := b.encodedBody()
	res := events.APIGatewayV2HTTPResponse{StatusCode: b.status, Headers: map[string]string{}, Body: body, IsBase64Encoded: b64}
	for k, vs := range b.header {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			res.Cookies = append(res.Cookies, vs...)
			continue
		}
		res.Headers[k] = strings.Join(vs, ",")
	}
	return res
}
