package advise_test

import (
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/advise"
	"github.com/plinth-data/plinth/spec"
)

const contacts = `domain: contacts
description: Contact details.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: contact
    plural: contacts
    key: {name: contactId, type: uuid, generated: true, pii: none}
    fields:
      - {name: email, type: string, pii: personal}
      - {name: phone, type: string, pii: personal}
    filters:
      - {param: email, field: email, match: exact}
`

const cases = `domain: cases
description: Cases.
owner: {serviceArea: Test, productOwner: test@example.org}
entities:
  - name: case
    plural: cases
    key: {name: caseId, type: integer, generated: true, pii: none}
    fields:
      - {name: title, type: string, pii: none}
      - {name: opened, type: date, pii: none}
      - name: notes
        type: array
        pii: personal
        items: {type: string}
    filters:
      - {param: title, field: title, match: contains}
      - {param: opened, field: opened, match: range}
`

func parse(t *testing.T, y string) *plinth.Domain {
	t.Helper()
	d, err := spec.Parse("x.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

var urls = map[string]string{advise.DynamoDB: "dynamodb://eu-west-2", advise.PostgreSQL: "postgres://db/plinth"}

func TestKeyAccessAndScaleChooseDynamoDB(t *testing.T) {
	a := advise.Advise(parse(t, contacts), map[string]advise.Answer{
		"low-latency": {Value: yes(), Source: "flag"}, "horizontal-scale": {Value: yes(), Source: "flag"},
		"frequent-updates": {Value: no(), Source: "flag"}}, urls)
	if a.Recommendation != advise.DynamoDB {
		t.Fatalf("recommendation %s, points %v", a.Recommendation, a.Points)
	}
	// Inferred: one non-key filter is not "many"; a flat structure is structured.
	if a.Answers["structured"].Source != "spec" || *a.Answers["structured"].Value != true {
		t.Errorf("structured: %+v", a.Answers["structured"])
	}
	if a.StoresLine != "stores: {contacts: dynamodb://eu-west-2}" {
		t.Errorf("stores line %q", a.StoresLine)
	}
	if len(a.ScanFilters) != 0 || !strings.Contains(strings.Join(a.TradeOffs, "\n"), "served by an index") {
		t.Errorf("trade-offs %q, scans %v", a.TradeOffs, a.ScanFilters)
	}
}

func TestScanFiltersWithFrequentQueriesChoosePostgreSQL(t *testing.T) {
	a := advise.Advise(parse(t, cases), map[string]advise.Answer{
		"low-latency": {Value: yes(), Source: "flag"}, "horizontal-scale": {Value: yes(), Source: "flag"}}, urls)
	if a.Recommendation != advise.PostgreSQL || !strings.HasPrefix(a.Reasons[0], "rule 1") {
		t.Fatalf("recommendation %s, reasons %q", a.Recommendation, a.Reasons)
	}
	if want := []string{"cases?title (contains)", "cases?opened (range)"}; strings.Join(a.ScanFilters, ",") != strings.Join(want, ",") {
		t.Errorf("scan filters %v, want %v", a.ScanFilters, want)
	}
	if !strings.Contains(a.Text(), "on DynamoDB these filters would be scans") || !strings.Contains(a.Text(), "The rule:") {
		t.Errorf("text lacks the scans or the rule:\n%s", a.Text())
	}
	// Answering that non-key queries are rare lifts rule 1: then the points decide.
	a = advise.Advise(parse(t, cases), map[string]advise.Answer{"non-key-queries": {Value: no(), Source: "flag"},
		"low-latency": {Value: yes(), Source: "flag"}, "horizontal-scale": {Value: yes(), Source: "flag"}}, urls)
	if a.Recommendation != advise.DynamoDB {
		t.Errorf("with rare non-key queries: %s (%v)", a.Recommendation, a.Points)
	}
	if !strings.Contains(strings.Join(a.TradeOffs, "\n"), "generated integer keys") {
		t.Errorf("trade-offs lack the integer key counter: %q", a.TradeOffs)
	}
}

func TestTieAndNoAnswersChoosePostgreSQL(t *testing.T) {
	a := advise.Advise(nil, nil, urls)
	if a.Recommendation != advise.PostgreSQL || !strings.HasPrefix(a.Reasons[0], "rule 3") {
		t.Fatalf("no answers: %s %q", a.Recommendation, a.Reasons)
	}
	for _, q := range advise.Questions {
		if a.Answers[q.ID].Source != "unanswered" {
			t.Errorf("%s: %+v", q.ID, a.Answers[q.ID])
		}
	}
	a = advise.Advise(nil, map[string]advise.Answer{"frequent-updates": {Value: yes()}, "low-latency": {Value: yes()}}, urls)
	if a.Recommendation != advise.PostgreSQL {
		t.Errorf("a tie: %s", a.Recommendation)
	}
}
