package datasafety

import (
	"bytes"
	"strconv"
	"sync"
	"testing"
)

// TestPRFMemo: remembered hashes are the hashes, from any goroutine, and
// the memo stops growing at prfMemoMax.
func TestPRFMemo(t *testing.T) {
	o := NewObfuscator(bytes.Repeat([]byte("m"), 32))
	const n = 5000
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := range 2 {
				for i := range n {
					v := strconv.Itoa((i*7 + w*13 + round) % n)
					if got, want := o.memo.prf(o, "first-name", v), o.prf("first-name", v); got != want {
						t.Errorf("memo gives %x for %q, prf %x", got, v, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if d := o.memo.done.Load(); d == nil || len(*d) < n/2 {
		t.Fatalf("the memo holds %v entries after %d distinct values", d, n)
	}
	for i := range 2 * prfMemoMax {
		o.memo.prf(o, "k", strconv.Itoa(i))
	}
	if d := o.memo.done.Load(); !o.memo.full.Load() || len(*d)+len(o.memo.pending) > prfMemoMax*3/2+256 {
		t.Fatalf("the memo holds %d entries, full %v; want it to stop near %d", len(*d)+len(o.memo.pending), o.memo.full.Load(), prfMemoMax)
	}
}
