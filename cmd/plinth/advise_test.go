package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAdviseByFlags(t *testing.T) {
	out, err := runPlinth(t.Context(), t, "advise", "--domain", "residents", "--json", "--frequent-updates", "no",
		"--low-latency", "yes", "--horizontal-scale", "yes", "--non-key-queries", "no", "--region", "eu-west-1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var a struct {
		Domain, Recommendation, StoresLine, Rule string
		Answers                                  map[string]struct{ Source string }
		ScanFilters                              []string
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if a.Domain != "residents" || a.Recommendation != "dynamodb" || a.StoresLine != "stores: {residents: dynamodb://eu-west-1}" {
		t.Errorf("advice %+v", a)
	}
	if a.Answers["structured"].Source != "spec" || a.Answers["low-latency"].Source != "flag" || len(a.ScanFilters) == 0 || a.Rule == "" {
		t.Errorf("answers %+v, scan filters %v", a.Answers, a.ScanFilters)
	}
	text, err := runPlinth(t.Context(), t, "advise", "--domain", "residents")
	if err != nil || !strings.Contains(text, "Recommendation: PostgreSQL") || !strings.Contains(text, "stores: {residents: postgres://") {
		t.Errorf("text advice: %v\n%s", err, text)
	}
	for _, bad := range [][]string{{"--low-latency", "maybe"}, {"--domain", "nosuch"}} {
		if out, err := runPlinth(t.Context(), t, append([]string{"advise"}, bad...)...); err == nil {
			t.Errorf("advise %v: no error\n%s", bad, out)
		}
	}
}

// TestValidateWarnsAboutScansOnDynamoDB: validate names the filters that
// would be scans for domains stored on DynamoDB, and only for those.
func TestValidateWarnsAboutScansOnDynamoDB(t *testing.T) {
	out, err := runPlinth(t.Context(), t, "validate", "--store", "dynamodb://eu-west-2")
	if err != nil || !strings.Contains(out, "warn residents: /api/v1/residents?last_name (contains) is a scan on DynamoDB") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = runPlinth(t.Context(), t, "validate", "--store", "sqlite:///tmp/x.db")
	if err != nil || strings.Contains(out, "warn") {
		t.Fatalf("on SQLite: %v\n%s", err, out)
	}
}
