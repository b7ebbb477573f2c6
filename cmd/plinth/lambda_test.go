package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/sqlite"
)

// runtimeAPI is a Lambda Runtime API endpoint (the protocol AWS Lambda
// speaks to a provided.al2023 bootstrap): the function polls it for the
// next event and posts the answer back.
type runtimeAPI struct {
	srv     *httptest.Server
	events  chan invocation
	mu      sync.Mutex
	answers map[string]chan answer
	initErr chan string
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
}

type answer struct {
	body  []byte
	error bool
}

func newRuntimeAPI(t *testing.T) *runtimeAPI {
	r := &runtimeAPI{events: make(chan invocation), answers: map[string]chan answer{}, initErr: make(chan string, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, req *http.Request) {
		select {
		case inv := <-r.events:
			w.Header().Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			w.Header().Set("Lambda-Runtime-Deadline-Ms", fmt.Sprint(inv.deadline.UnixMilli()))
			w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-2:123456789012:function:plinth-residents-api")
			w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-66f1c2d3-4a5b6c7d8e9f0a1b2c3d4e5f")
			w.Write(inv.payload)
		case <-req.Context().Done():
		}
	})
	post := func(isErr bool) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			r.answer(req.PathValue("id")) <- answer{body, isErr}
			w.WriteHeader(http.StatusAccepted)
		}
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", post(false))
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", post(true))
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.initErr <- string(body)
		w.WriteHeader(http.StatusAccepted)
	})
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *runtimeAPI) answer(id string) chan answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.answers[id] == nil {
		r.answers[id] = make(chan answer, 1)
	}
	return r.answers[id]
}

// invoke hands the function one event and waits for its answer.
func (r *runtimeAPI) invoke(t *testing.T, payload []byte, timeout time.Duration) answer {
	t.Helper()
	id := fmt.Sprintf("req-%d", time.Now().UnixNano())
	select {
	case r.events <- invocation{id, payload, time.Now().Add(timeout)}:
	case msg := <-r.initErr:
		t.Fatalf("the function failed to start: %s", msg)
	case <-time.After(60 * time.Second):
		t.Fatal("the function did not ask for an event within 60s")
	}
	select {
	case a := <-r.answer(id):
		if a.error {
			t.Fatalf("the function answered an error: %s", a.body)
		}
		return a
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("no answer to %s", id)
	}
	return answer{}
}

// startFunction runs the plinth binary as AWS Lambda runs bootstrap: no
// arguments, the handler in _HANDLER.
func startFunction(t *testing.T, handler string, env []string) *runtimeAPI {
	r := newRuntimeAPI(t)
	cmd := exec.Command(binary)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), append(env, "_HANDLER="+handler,
		"AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(r.srv.URL, "http://"),
		"AWS_LAMBDA_FUNCTION_NAME=plinth-residents-"+handler)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s function's log:\n%s", handler, stderr.String())
		}
	})
	return r
}

func userJWT(t *testing.T, secret string, groups ...string) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "a1b2c3d4-0000-4000-8000-000000000042", "email": "sam.okafor@example.gov.uk", "name": "Sam Okafor",
		"groups": groups, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// lambdaEvent reads a recorded API Gateway event with the token and the
// record id put in.
func lambdaEvent(t *testing.T, file, token, id string) []byte {
	data, err := os.ReadFile(filepath.Join("testdata", "lambda", file))
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("Bearer TOKEN"), []byte("Bearer "+token))
	return bytes.ReplaceAll(data, []byte("/residents/ID"), []byte("/residents/"+id))
}

// gatewayResponse is either payload version's response.
type gatewayResponse struct {
	StatusCode        int                 `json:"statusCode"`
	Headers           map[string]string   `json:"headers"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	Body              string              `json:"body"`
	IsBase64Encoded   bool                `json:"isBase64Encoded"`
}

func (g gatewayResponse) header(name string) string {
	for k, v := range g.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	for k, vs := range g.MultiValueHeaders {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// The API as a Lambda, driven through the Lambda Runtime API with
// recorded API Gateway events of both payload versions: the answers are
// the API's, the writes leave outbox rows and audit records; the
// background function then relays the events and chains the records.
func TestLambdaFunctions(t *testing.T) {
	dir := t.TempDir()
	store := "sqlite://" + filepath.Join(dir, "plinth.db")
	bus, err := nats.StartEmbedded(nats.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Shutdown)
	secret := "a-user-token-secret-of-32-bytes-or-more"
	env := []string{"PLINTH_ENV=staging", "PLINTH_STORE=" + store, "PLINTH_AUTH_SECRET=" + secret,
		"PLINTH_NATS_URL=" + bus.ClientURL(), "PLINTH_DATA_DIR=" + dir}
	if out, err := run(t, dir, env, "access", "set", "residents", "--env", "staging",
		"--read-groups", "residents-readers", "--write-groups", "residents-writers"); err != nil {
		t.Fatalf("access set: %v\n%s", err, out)
	}
	writer := userJWT(t, secret, "residents-writers", "residents-readers")
	api := startFunction(t, "api", env)

	call := func(file, token, id string) gatewayResponse {
		t.Helper()
		a := api.invoke(t, lambdaEvent(t, file, token, id), 30*time.Second)
		var res gatewayResponse
		if err := json.Unmarshal(a.body, &res); err != nil {
			t.Fatalf("%s: %v\n%s", file, err, a.body)
		}
		if res.IsBase64Encoded {
			b, _ := base64.StdEncoding.DecodeString(res.Body)
			res.Body = string(b)
		}
		return res
	}

	// REST API (1.0): create.
	res := call("rest-create-resident.json", writer, "")
	var rec map[string]any
	if err := json.Unmarshal([]byte(res.Body), &rec); err != nil || res.StatusCode != 201 || rec["firstName"] != "Grace" {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}
	id := fmt.Sprint(rec["mosaicId"])
	if res.header("ETag") != `"1"` || res.header("x-correlation-id") != "lambda-rest-create" ||
		!strings.HasSuffix(res.header("Location"), "/api/v1/residents/"+id) {
		t.Errorf("create headers: %v", res.MultiValueHeaders)
	}

	// HTTP API (2.0) with the stage in rawPath: view; no correlation id
	// sent, so API Gateway's request id names the request.
	res = call("http-get-resident.json", writer, id)
	if res.StatusCode != 200 || !strings.Contains(res.Body, `"lastName":"Hopper"`) || res.header("x-correlation-id") != "Qg7aXjYELPEEJxw" {
		t.Fatalf("view: %d %v %s", res.StatusCode, res.Headers, res.Body)
	}
	// Function URL (2.0), base64 body, If-Match: update.
	res = call("http-patch-resident.json", writer, id)
	if res.StatusCode != 200 || !strings.Contains(res.Body, `"lastName":"Hopper-Morray"`) || res.header("ETag") != `"2"` {
		t.Fatalf("update: %d %v %s", res.StatusCode, res.Headers, res.Body)
	}
	// A stale version is refused, as by serve.
	if res = call("http-patch-resident.json", writer, id); res.StatusCode != 412 || res.header("Content-Type") != "application/problem+json" {
		t.Fatalf("stale update: %d %s", res.StatusCode, res.Body)
	}
	// REST API with the stage in path, a query string.
	res = call("rest-list-residents.json", writer, "")
	if res.StatusCode != 200 || !strings.Contains(res.Body, `"residents":[{`) || !strings.Contains(res.Body, "Hopper-Morray") {
		t.Fatalf("list: %d %s", res.StatusCode, res.Body)
	}
	// No token, and a reader writing: the API's own answers.
	if res = call("rest-list-residents.json", "", ""); res.StatusCode != 401 {
		t.Fatalf("no token: %d %s", res.StatusCode, res.Body)
	}
	if res = call("rest-create-resident.json", userJWT(t, secret, "residents-readers"), ""); res.StatusCode != 403 {
		t.Fatalf("reader creating: %d %s", res.StatusCode, res.Body)
	}

	// The writes wait in the outbox: nothing runs between invocations.
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	pending, err := st.PendingEvents(t.Context(), 10)
	st.Close()
	if err != nil || len(pending) != 2 || pending[0].Subject != "plinth.staging.residents.residents.created" ||
		pending[1].Subject != "plinth.staging.residents.residents.updated" || !bytes.Contains(pending[1].Payload, []byte(`"correlationId":"lambda-url-patch"`)) {
		t.Fatalf("outbox after the API invocations: %v %+v", err, pending)
	}
	nc, err := bus.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream := nats.StreamName("staging", "residents")
	if n := natstest.StreamCount(t, js, stream); n != 0 {
		t.Fatalf("%d events published without the background function", n)
	}

	// The background function relays them and chains the audit records
	// until shortly before its deadline.
	bg := startFunction(t, "background", env)
	start := time.Now()
	a := bg.invoke(t, []byte(`{"version":"0","id":"5e3c3b6e-1d2a-4f8e-9c3b-2a1d0e9f8c7b","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2026-11-30T10:15:00Z","region":"eu-west-2","resources":["arn:aws:events:eu-west-2:123456789012:rule/plinth-residents-background"],"detail":{}}`),
		lambdaMargin+3*time.Second)
	var out backgroundResult
	if err := json.Unmarshal(a.body, &out); err != nil || out.Published != 2 || out.RelayErr != "" {
		t.Fatalf("background answer: %s", a.body)
	}
	if took := time.Since(start); took < 2*time.Second || took > lambdaMargin {
		t.Errorf("the background invocation ran %s; it should work until %s before its deadline", took, lambdaMargin)
	}
	var types []string
	for _, m := range natstest.ReadStream(t, js, stream) {
		var ev struct{ EventType, CorrelationID, EntityID string }
		json.Unmarshal(m.Data(), &ev)
		if ev.EntityID != id {
			t.Errorf("event for %s", ev.EntityID)
		}
		types = append(types, ev.EventType+" "+ev.CorrelationID)
	}
	if want := "[ResidentCreatedEvent lambda-rest-create ResidentUpdatedEvent lambda-url-patch]"; fmt.Sprint(types) != want {
		t.Errorf("events %v, want %s", types, want)
	}

	// Audit: who did what through the Lambda, in an intact chain.
	outText, err := run(t, dir, env, "audit", "search", "--entity-id", id, "--json")
	if err != nil {
		t.Fatalf("audit search: %v\n%s", err, outText)
	}
	for _, want := range []string{"lambda-rest-create", "Qg7aXjYELPEEJxw", "lambda-url-patch", "sam.okafor@example.gov.uk", "203.0.113.24"} {
		if !strings.Contains(outText, want) {
			t.Errorf("audit records lack %q:\n%s", want, outText)
		}
	}
	if outText, err := run(t, dir, env, "audit", "verify"); err != nil || !strings.Contains(outText, "intact") {
		t.Fatalf("audit verify: %v\n%s", err, outText)
	}
}
