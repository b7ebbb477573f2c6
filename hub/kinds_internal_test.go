package hub

import (
	"testing"
	"time"
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
