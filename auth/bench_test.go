package auth

import (
	"context"
	"testing"

	"github.com/plinth-data/plinth"
)

// BenchmarkDecide measures a decision with warm caches (verified token,
// policies, grant): the cost the middleware adds to every request.
func BenchmarkDecide(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	svc, _, err := f.a.IssueServiceToken(ctx, grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		b.Fatal(err)
	}
	readers := claims("residents-readers", "some-other-group", "and-another")
	cases := []struct {
		name, token string
	}{
		{"user HS256", hs(b, readers)},
		{"user RS256 JWKS", rs1(b, readers)},
		{"service token", svc},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := plinth.AuthRequest{Authorization: "Bearer " + c.token, Method: "GET", Path: "/api/v1/residents/42"}
			if d := f.a.Decide(ctx, r); !d.Allow {
				b.Fatalf("not allowed: %d %s", d.Status, d.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := f.a.Decide(ctx, r); !d.Allow {
					b.Fatalf("not allowed: %d %s", d.Status, d.Reason)
				}
			}
		})
	}
	// For comparison: the cost of a full verification (cold token cache).
	b.Run("user RS256 JWKS uncached", func(b *testing.B) {
		r := plinth.AuthRequest{Authorization: "Bearer " + rs1(b, readers), Method: "GET", Path: "/api/v1/residents/42"}
		b.ReportAllocs()
		for b.Loop() {
			f.a.tokens.mu.Lock()
			clear(f.a.tokens.m)
			f.a.tokens.mu.Unlock()
			if d := f.a.Decide(ctx, r); !d.Allow {
				b.Fatalf("not allowed: %d %s", d.Status, d.Reason)
			}
		}
	})
}
