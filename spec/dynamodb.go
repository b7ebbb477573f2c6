package spec

import (
	"fmt"

	"github.com/plinth-data/plinth"
)

// DynamoDBWarnings lists what a domain would pay for on DynamoDB: list
// filters the dynamodb store can serve only by reading every record of the
// entity (contains and range filters — a DynamoDB index answers equality
// and prefixes, not substrings, and a range filter in key order cannot use
// one), and entities over DynamoDB's limit of 20 indexes per table. An
// unfiltered list is not among them: it reads one page per shard in key
// order. `plinth validate` prints these for domains stored on DynamoDB;
// `plinth advise` weighs them.
func DynamoDBWarnings(d *plinth.Domain) []string {
	var out []string
	for _, e := range d.Entities {
		indexes := 1 // updatedAt
		for _, f := range e.Filters {
			switch {
			case f.Match == plinth.MatchContains:
				out = append(out, fmt.Sprintf("%s: /api/v1/%s?%s (contains) is a scan on DynamoDB: each page reads records until it has enough matches; consider prefix, or PostgreSQL (plinth advise)", d.Name, e.Plural, f.Param))
			case f.Match == plinth.MatchRange:
				out = append(out, fmt.Sprintf("%s: /api/v1/%s?%s (range) is a scan on DynamoDB: each page reads records until it has enough matches; consider PostgreSQL (plinth advise)", d.Name, e.Plural, f.Param))
			case f.Array != nil || len(f.Path) == 1 && f.Path[0] == e.Key.Name:
			case f.Match == plinth.MatchPrefix:
				indexes += 2
			default:
				indexes++
			}
		}
		if indexes > 20 {
			out = append(out, fmt.Sprintf("%s: %s needs %d global secondary indexes on DynamoDB, over its limit of 20 per table: the store refuses to prepare it", d.Name, e.Plural, indexes))
		}
	}
	return out
}
