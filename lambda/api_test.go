package lambda

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// echo answers with what it was asked, as JSON, or as the content type the
// query names.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch r.URL.Query().Get("as") {
	case "parquet":
		w.Header().Set("Content-Type", "application/vnd.apache.parquet")
		w.Write([]byte{'P', 'A', 'R', '1', 0, 0xff})
		return
	case "huge":
		w.Header().Set("Content-Type", "text/csv")
		w.Write([]byte(strings.Repeat("x", MaxResponseBytes+1)))
		return
	case "panic":
		panic("boom")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Add("Set-Cookie", "a=1")
	w.Header().Add("Set-Cookie", "b=2")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.Query(),
		"body": string(body), "remote": r.RemoteAddr, "correlation": r.Header.Get("x-correlation-id"), "cookie": r.Header.Get("Cookie")})
})

func invoke(t *testing.T, ev any) map[string]any {
	t.Helper()
	payload, _ := json.Marshal(ev)
	out, err := NewAPI(echo).Invoke(context.Background(), payload)
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	json.Unmarshal(out, &res)
	return res
}

func body(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(res["body"].(string)), &m); err != nil {
		t.Fatalf("body %v: %v", res["body"], err)
	}
	return m
}

func TestAPIPayloadV1(t *testing.T) {
	res := invoke(t, events.APIGatewayProxyRequest{
		HTTPMethod: "POST", Path: "/prod/api/v1/residents", Resource: "/{proxy+}",
		MultiValueQueryStringParameters: map[string][]string{"tag": {"a", "b"}},
		MultiValueHeaders:               map[string][]string{"Content-Type": {"application/json"}},
		Body:                            base64.StdEncoding.EncodeToString([]byte(`{"x":1}`)), IsBase64Encoded: true,
		RequestContext: events.APIGatewayProxyRequestContext{Stage: "prod", RequestID: "c5a3e6b0-1f2d-4e8a-9b7c-6d5e4f3a2b10",
			Identity: events.APIGatewayRequestIdentity{SourceIP: "203.0.113.9"}},
	})
	b := body(t, res)
	if res["statusCode"] != float64(201) || b["path"] != "/api/v1/residents" || b["body"] != `{"x":1}` ||
		fmt.Sprint(b["query"]) != "map[tag:[a b]]" || b["remote"] != "203.0.113.9:0" || b["correlation"] != "c5a3e6b0-1f2d-4e8a-9b7c-6d5e4f3a2b10" {
		t.Fatalf("%v %v", res, b)
	}
	if mv, _ := res["multiValueHeaders"].(map[string]any); fmt.Sprint(mv["Set-Cookie"]) != "[a=1 b=2]" {
		t.Errorf("headers %v", res["multiValueHeaders"])
	}
}

func TestAPIPayloadV2(t *testing.T) {
	ev := events.APIGatewayV2HTTPRequest{Version: "2.0", RouteKey: "$default", RawPath: "/api/v1/residents", RawQueryString: "first_name=Ada&limit=5",
		Cookies: []string{"s=1", "t=2"}, Headers: map[string]string{"x-correlation-id": "mine"}}
	ev.RequestContext.HTTP.Method = "GET"
	ev.RequestContext.Stage = "$default"
	res := invoke(t, ev)
	b := body(t, res)
	if b["method"] != "GET" || fmt.Sprint(b["query"]) != "map[first_name:[Ada] limit:[5]]" || b["correlation"] != "mine" || b["cookie"] != "s=1; t=2" {
		t.Fatalf("%v", b)
	}
	if fmt.Sprint(res["cookies"]) != "[a=1 b=2]" {
		t.Errorf("cookies %v", res["cookies"])
	}

	// Binary answers are base64; text ones are not.
	ev.RawQueryString = "as=parquet"
	res = invoke(t, ev)
	if raw, _ := base64.StdEncoding.DecodeString(res["body"].(string)); res["isBase64Encoded"] != true || string(raw[:4]) != "PAR1" {
		t.Errorf("parquet: %v", res)
	}
	// Too large for Lambda, and a panic: problem+json, not a broken answer.
	for as, want := range map[string]string{"huge": "6 MB limit", "panic": "could not be answered"} {
		ev.RawQueryString = "as=" + as
		res = invoke(t, ev)
		h, _ := res["headers"].(map[string]any)
		if res["statusCode"] != float64(500) || h["Content-Type"] != "application/problem+json" || !strings.Contains(res["body"].(string), want) {
			t.Errorf("%s: %v", as, res)
		}
	}
}

func TestAPIRefusesOtherEvents(t *testing.T) {
	for _, payload := range []string{`not json`, `{"detail-type":"Scheduled Event"}`} {
		if _, err := NewAPI(echo).Invoke(context.Background(), []byte(payload)); err == nil {
			t.Errorf("%s: accepted", payload)
		}
	}
}
