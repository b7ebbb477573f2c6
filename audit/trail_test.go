package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// appendAt appends and chains records at the given minutes past base, one
// per minute given, with correlation ids name-minute.
func appendAt(t *testing.T, st plinth.AuditStore, name string, base time.Time, minutes ...int) {
	t.Helper()
	for _, m := range minutes {
		r := sample(m)
		r.Time = base.Add(time.Duration(m) * time.Minute)
		r.CorrelationID = fmt.Sprintf("%s-%d", name, m)
		if _, err := st.AppendAudit(context.Background(), []plinth.AuditRecord{r}); err != nil {
			t.Fatal(err)
		}
	}
	chainAll(t, st)
}

// TestSearchTrailMergesChainsByTime: two stores' chains, interleaved in
// time, come out as one time-ordered trail, each record naming its store,
// and paging by position never repeats or skips one.
func TestSearchTrailMergesChainsByTime(t *testing.T) {
	def, _ := openStore(t)
	other, _ := openStore(t)
	base := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	appendAt(t, def, "d", base, 1, 2, 5, 8, 9)
	appendAt(t, other, "o", base, 3, 4, 6, 7, 10)
	chains := []Chain{{Name: DefaultChain, Store: def}, {Name: "residents", Store: other}}
	want := "d-1 d-2 o-3 o-4 d-5 o-6 o-7 d-8 d-9 o-10"
	for _, limit := range []int{1, 2, 3, 4, 100} {
		var got []string
		var after []int64
		for page := 0; ; page++ {
			recs, next, more, err := SearchTrail(context.Background(), chains, plinth.AuditQuery{Limit: limit}, after)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) > limit || page > 20 {
				t.Fatalf("limit %d: a page of %d", limit, len(recs))
			}
			for _, r := range recs {
				if r.Chain != map[byte]string{'d': DefaultChain, 'o': "residents"}[r.CorrelationID[0]] {
					t.Fatalf("%s in chain %q", r.CorrelationID, r.Chain)
				}
				got = append(got, r.CorrelationID)
			}
			if !more {
				break
			}
			after = next
		}
		if strings.Join(got, " ") != want {
			t.Errorf("limit %d: %s; want %s", limit, strings.Join(got, " "), want)
		}
	}
	// Filters apply to every chain; SearchTrailAll walks every page.
	var got []string
	err := SearchTrailAll(context.Background(), chains, plinth.AuditQuery{Since: base.Add(4 * time.Minute), Until: base.Add(9 * time.Minute), Limit: 2},
		func(r TrailRecord) error { got = append(got, r.CorrelationID); return nil })
	if err != nil || strings.Join(got, " ") != "o-4 d-5 o-6 o-7 d-8" {
		t.Errorf("since/until: %v %v", got, err)
	}
	if _, _, _, err := SearchTrail(context.Background(), chains, plinth.AuditQuery{}, []int64{1}); err == nil {
		t.Error("a position for one chain of two was accepted")
	}
}

// TestVerifyTrailNamesTheBrokenChain: each chain is verified on its own;
// a break is reported in the chain that has it, and anchors go to the
// chain they name.
func TestVerifyTrailNamesTheBrokenChain(t *testing.T) {
	def, _ := openStore(t)
	other, path := openStore(t)
	fill(t, def, 3)
	recs := fill(t, other, 4)
	chains := []Chain{{Name: DefaultChain, Store: def}, {Name: "residents", Store: other}}
	anchor := Anchor{Chain: "residents", Sequence: 4, Hash: recs[3].Hash}
	reps, err := VerifyTrail(context.Background(), chains, nil, nil, anchor)
	if err != nil || len(reps) != 2 || reps[0].Broken != nil || reps[1].Broken != nil ||
		reps[0].Records != 3 || reps[1].Records != 4 || reps[1].Chain != "residents" {
		t.Fatalf("clean trail: %+v %v", reps, err)
	}
	// The default chain has no record 4: the anchor must not go there.
	if reps, _ := VerifyTrail(context.Background(), chains, nil, nil, Anchor{Sequence: 4, Hash: recs[3].Hash}); reps[0].Broken == nil || reps[1].Broken != nil {
		t.Fatalf("an anchor of the default chain: %+v", reps)
	}
	if _, err := VerifyTrail(context.Background(), chains, nil, nil, Anchor{Chain: "contacts", Sequence: 1, Hash: recs[0].Hash}); err == nil ||
		!strings.Contains(err.Error(), "contacts") {
		t.Fatalf("an anchor of an unknown store: %v", err)
	}
	exec(t, rawDB(t, path), `UPDATE plinth_audit SET status = 500 WHERE sequence = 2`)
	var progress []int64
	reps, err = VerifyTrail(context.Background(), chains, nil, func(n int64) { progress = append(progress, n) })
	if err != nil || reps[0].Broken != nil || reps[1].Broken == nil || reps[1].Broken.Sequence != 2 {
		t.Fatalf("a changed record in the other chain: %+v %v", reps, err)
	}
	if !slices.Contains(progress, 7) {
		t.Errorf("progress %v never reached the 7 records of both chains", progress)
	}
}

func TestParseAnchorOfAStore(t *testing.T) {
	h := strings.Repeat("ab", 32)
	a, err := ParseAnchor("residents,contacts=42:" + h)
	if err != nil || a.Chain != "residents,contacts" || a.Sequence != 42 || a.String() != "residents,contacts=42:"+h {
		t.Fatalf("ParseAnchor: %+v %v", a, err)
	}
	if a, err := ParseAnchor("default=42:" + h); err != nil || a.ChainName() != DefaultChain || a.String() != "42:"+h {
		t.Fatalf("the default store named: %+v %v", a, err)
	}
	if _, err := ParseAnchor("=42:" + h); err == nil {
		t.Error("an empty store name was accepted")
	}
}

// TestTrailSearchAuditPositions: the position text round-trips, and one the
// trail did not make is a bad cursor.
func TestTrailSearchAuditPositions(t *testing.T) {
	def, _ := openStore(t)
	other, _ := openStore(t)
	base := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	appendAt(t, def, "d", base, 1, 3)
	appendAt(t, other, "o", base, 2)
	tr := Trail{{Name: DefaultChain, Store: def}, {Name: "residents", Store: other}}
	page, n, next, err := tr.SearchAudit(context.Background(), plinth.AuditQuery{Limit: 2}, "")
	if err != nil || n != 2 || next != "1.1" || len(page.([]TrailRecord)) != 2 {
		t.Fatalf("first page: %v %d %q %v", page, n, next, err)
	}
	page, n, next, err = tr.SearchAudit(context.Background(), plinth.AuditQuery{Limit: 2}, next)
	if recs, _ := page.([]TrailRecord); err != nil || n != 1 || next != "" || recs[0].CorrelationID != "d-3" {
		t.Fatalf("second page: %v %d %q %v", page, n, next, err)
	}
	for _, bad := range []string{"12", "1.2.3", "0.0", "-1.2", "a.1", "1."} {
		if _, _, _, err := tr.SearchAudit(context.Background(), plinth.AuditQuery{}, bad); !errors.Is(err, plinth.ErrBadCursor) {
			t.Errorf("position %q: %v; want a bad cursor", bad, err)
		}
	}
}
