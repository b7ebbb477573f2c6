// Package advise recommends PostgreSQL or DynamoDB for a domain from the
// organisation's five questions, inferring what it can from the domain
// spec, and says why, what the choice costs for that spec, and the
// plinth.yaml line that selects it.
package advise

import (
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
)

// Question is one of the five.
type Question struct {
	ID   string // flag name
	Text string
	// Favours is the engine a "yes" counts for.
	Favours string
}

// Engines.
const (
	PostgreSQL = "postgresql"
	DynamoDB   = "dynamodb"
)

// Questions are the organisation's five, in its order.
var Questions = []Question{
	{"frequent-updates", "Many frequent updates per second (to the same records, or overall)?", PostgreSQL},
	{"non-key-queries", "Many queries on non-key properties (lists filtered by fields other than the key)?", PostgreSQL},
	{"low-latency", "Low-latency (~10 ms) key access needed at any scale?", DynamoDB},
	{"structured", "Is the data highly structured and predictable?", PostgreSQL},
	{"horizontal-scale", "Future horizontal scale (beyond one database server)?", DynamoDB},
}

// Rule is the weighing rule, stated in the output and the README.
const Rule = `1. If the domain's lists need filters DynamoDB can only serve by scanning
   (contains or range filters) and queries on non-key properties are frequent,
   choose PostgreSQL: on DynamoDB those lists read the whole table.
2. Otherwise count: each "yes" to frequent updates, non-key queries or
   structured data is a point for PostgreSQL; each "yes" to low-latency key
   access or horizontal scale is a point for DynamoDB. The engine with more
   points wins.
3. A tie, or no answers, goes to PostgreSQL, Plinth's default: every filter
   indexed, snapshot-consistent reports, no per-item size limit.`

// Answer is what is known about one question.
type Answer struct {
	Value  *bool  `json:"value"`  // nil: not answered
	Source string `json:"source"` // "flag", "prompt", "spec" or "unanswered"
	Why    string `json:"why,omitempty"`
}

// Inputs are the answers given; a missing key is not answered.
type Inputs map[string]bool

// Advice is the recommendation.
type Advice struct {
	Domain         string            `json:"domain,omitempty"`
	Answers        map[string]Answer `json:"answers"`
	Rule           string            `json:"rule"`
	Points         map[string]int    `json:"points"`
	Recommendation string            `json:"recommendation"`
	Reasons        []string          `json:"reasons"`
	TradeOffs      []string          `json:"tradeOffs"`
	ScanFilters    []string          `json:"scanFilters"`
	StoresLine     string            `json:"storesLine"`
}

// Infer answers from a domain spec what it can: non-key queries (from its
// filters) and structure (from nested objects and arrays).
func Infer(d *plinth.Domain) map[string]Answer {
	out := map[string]Answer{}
	filters, scans := 0, scanFilters(d)
	nested := []string{}
	for _, e := range d.Entities {
		for _, f := range e.Filters {
			if !(len(f.Path) == 1 && f.Path[0] == e.Key.Name) {
				filters++
			}
		}
		for _, f := range e.Fields {
			if f.Type == plinth.TypeArray || f.Type == plinth.TypeObject {
				nested = append(nested, e.Plural+"."+f.Name)
			}
		}
	}
	yes, no := true, false
	switch {
	case len(scans) > 0 || filters >= 3:
		out["non-key-queries"] = Answer{Value: &yes, Source: "spec",
			Why: fmt.Sprintf("%d filters on non-key fields, %d of them scans on DynamoDB", filters, len(scans))}
	case filters == 0:
		out["non-key-queries"] = Answer{Value: &no, Source: "spec", Why: "no filters on non-key fields"}
	}
	if len(nested) == 0 {
		out["structured"] = Answer{Value: &yes, Source: "spec", Why: "only scalar fields: a fixed, flat structure"}
	} else {
		out["structured"] = Answer{Value: &no, Source: "spec",
			Why: "nested objects or arrays (" + strings.Join(nested, ", ") + "): a document shape"}
	}
	return out
}

// scanFilters lists the filters that DynamoDB serves by reading every
// shard (contains and range filters; see the dynamodb package).
func scanFilters(d *plinth.Domain) []string {
	var out []string
	for _, e := range d.Entities {
		for _, f := range e.Filters {
			if f.Match == plinth.MatchContains || f.Match == plinth.MatchRange {
				out = append(out, fmt.Sprintf("%s?%s (%s)", e.Plural, f.Param, f.Match))
			}
		}
	}
	return out
}

// Advise weighs the answers (given ones win over inferred ones) by Rule.
// d may be nil when no spec was given; storeURLs name the URL to put in
// the stores line for each engine.
func Advise(d *plinth.Domain, given map[string]Answer, storeURLs map[string]string) Advice {
	a := Advice{Answers: map[string]Answer{}, Rule: Rule, Points: map[string]int{PostgreSQL: 0, DynamoDB: 0}, ScanFilters: []string{}}
	if d != nil {
		a.Domain = d.Name
		for k, v := range Infer(d) {
			a.Answers[k] = v
		}
		a.ScanFilters = scanFilters(d)
	}
	for k, v := range given {
		a.Answers[k] = v
	}
	for _, q := range Questions {
		ans, ok := a.Answers[q.ID]
		if !ok {
			a.Answers[q.ID] = Answer{Source: "unanswered"}
			continue
		}
		if ans.Value != nil && *ans.Value {
			a.Points[q.Favours]++
			a.Reasons = append(a.Reasons, fmt.Sprintf("%s yes (%s) → %s", q.Text, sourceText(ans), engineName(q.Favours)))
		}
	}
	nonKey := a.Answers["non-key-queries"].Value
	switch {
	case len(a.ScanFilters) > 0 && nonKey != nil && *nonKey:
		a.Recommendation = PostgreSQL
		a.Reasons = append([]string{fmt.Sprintf("rule 1: %d filters would scan on DynamoDB and non-key queries are frequent", len(a.ScanFilters))}, a.Reasons...)
	case a.Points[DynamoDB] > a.Points[PostgreSQL]:
		a.Recommendation = DynamoDB
		a.Reasons = append([]string{fmt.Sprintf("rule 2: %d points for DynamoDB, %d for PostgreSQL", a.Points[DynamoDB], a.Points[PostgreSQL])}, a.Reasons...)
	default:
		a.Recommendation = PostgreSQL
		rule := "rule 2"
		if a.Points[DynamoDB] == a.Points[PostgreSQL] {
			rule = "rule 3 (a tie goes to PostgreSQL)"
		}
		a.Reasons = append([]string{fmt.Sprintf("%s: %d points for PostgreSQL, %d for DynamoDB", rule, a.Points[PostgreSQL], a.Points[DynamoDB])}, a.Reasons...)
	}
	a.TradeOffs = tradeOffs(a.Recommendation, a.ScanFilters, d)
	name := a.Domain
	if name == "" {
		name = "<domain>"
	}
	a.StoresLine = fmt.Sprintf("stores: {%s: %s}", name, storeURLs[a.Recommendation])
	return a
}

func tradeOffs(engine string, scans []string, d *plinth.Domain) []string {
	if engine == PostgreSQL {
		out := []string{"one primary server takes every write: scale reads with replicas, writes by a bigger server",
			"key lookups are fast but not guaranteed single-digit milliseconds under heavy load"}
		return out
	}
	out := []string{"global secondary indexes are eventually consistent: a list right after a write may not show it (views are consistent)",
		"reports are not one snapshot: a report read during writes may show some records' newer state",
		"an item holds at most 400 KB: larger records are refused with 413",
		"every write draws a number from one counter item (about a thousand writes a second per store)"}
	if len(scans) > 0 {
		out = append(out, "these filters read every shard (a scan, paid per item read): "+strings.Join(scans, ", "))
	} else {
		out = append(out, "every filter of this spec is served by an index (no list scans, except an unfiltered list, which reads every shard in key order)")
	}
	if d != nil {
		for _, e := range d.Entities {
			if e.Key.Type == plinth.KeyInteger && e.Key.Generated {
				out = append(out, e.Plural+" has generated integer keys: one counter item per entity; prefer UUID keys on DynamoDB")
			}
		}
	}
	return out
}

func sourceText(a Answer) string {
	if a.Why != "" {
		return a.Source + ": " + a.Why
	}
	return a.Source
}

func engineName(e string) string {
	if e == DynamoDB {
		return "DynamoDB"
	}
	return "PostgreSQL"
}

// Text renders advice for a terminal.
func (a Advice) Text() string {
	var b strings.Builder
	if a.Domain != "" {
		fmt.Fprintf(&b, "Domain: %s\n", a.Domain)
	}
	b.WriteString("\nAnswers:\n")
	for _, q := range Questions {
		ans := a.Answers[q.ID]
		v := "not answered"
		if ans.Value != nil {
			v = map[bool]string{true: "yes", false: "no"}[*ans.Value]
		}
		fmt.Fprintf(&b, "  %-60s %s (%s)\n", q.Text, v, sourceText(ans))
	}
	fmt.Fprintf(&b, "\nThe rule:\n%s\n\nRecommendation: %s\n", indent(a.Rule), engineName(a.Recommendation))
	for _, r := range a.Reasons {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	b.WriteString("\nTrade-offs for this spec:\n")
	for _, t := range a.TradeOffs {
		fmt.Fprintf(&b, "  - %s\n", t)
	}
	if len(a.ScanFilters) > 0 && a.Recommendation == PostgreSQL {
		fmt.Fprintf(&b, "  - on DynamoDB these filters would be scans: %s\n", strings.Join(a.ScanFilters, ", "))
	}
	fmt.Fprintf(&b, "\nIn plinth.yaml:\n  %s\n", a.StoresLine)
	return b.String()
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
