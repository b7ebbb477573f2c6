package hub

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// An exception claimed by a replica that stopped while making its grant
// may be opened again once the claim has lapsed, not before.
func TestExceptionClaimLapses(t *testing.T) {
	now := time.Now()
	req := &Request{Kind: KindException, Status: StatusOpening, Opened: &openedAccess{Opening: now.Add(-time.Minute)}}
	if req.mayOpen(now) {
		t.Error("a fresh claim may be opened again")
	}
	if !req.mayOpen(now.Add(openingTimeout)) {
		t.Error("a lapsed claim may not be opened again")
	}
	for _, st := range []string{StatusPending, StatusRejected, StatusOpened} {
		if (&Request{Kind: KindException, Status: st}).mayOpen(now) {
			t.Errorf("an exception that is %s may be opened", st)
		}
	}
}

// The state is stored compressed and read back whole; state stored as
// plain JSON before still reads.
func TestStateRoundTrip(t *testing.T) {
	st := &state{Keys: map[string][]Key{"ann": {{ID: "k1", PublicKey: "pk"}}}}
	for i := range 200 {
		st.Requests = append(st.Requests, &Request{ID: fmt.Sprint(i), Purpose: "Check eligibility for housing benefit", Status: StatusPending})
	}
	b, err := st.encode()
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(st)
	if len(b)*5 > len(plain) {
		t.Errorf("the stored state is %d bytes of %d as JSON: not compressed", len(b), len(plain))
	}
	for _, stored := range [][]byte{b, plain} {
		got, err := decodeState(plinth.Checkpoint{Value: stored}, true)
		if err != nil || len(got.Requests) != 200 || got.Keys["ann"][0].ID != "k1" {
			t.Fatalf("decoding the stored state: %v", err)
		}
	}
}
