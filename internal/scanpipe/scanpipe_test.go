package scanpipe

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// counting produces n records numbered from 0, stopping when emit fails.
func counting(n int, produced *int) func(func(plinth.Record) error) error {
	return func(emit func(plinth.Record) error) error {
		for i := range n {
			*produced = i + 1
			if err := emit(plinth.Record{Version: int64(i)}); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestRunInOrder(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 1000} {
		var produced int
		var got []int64
		fnErr, err := Run(t.Context(), 8, nil, counting(n, &produced), func(r plinth.Record) error {
			got = append(got, r.Version)
			return nil
		})
		if fnErr != nil || err != nil || len(got) != n {
			t.Fatalf("n=%d: %v %v, %d records", n, fnErr, err, len(got))
		}
		for i, v := range got {
			if v != int64(i) {
				t.Fatalf("n=%d: record %d is %d", n, i, v)
			}
		}
	}
}

func TestRunStops(t *testing.T) {
	before := runtime.NumGoroutine()
	boom := errors.New("boom")
	var produced, calls int
	fnErr, err := Run(t.Context(), 8, nil, counting(100000, &produced), func(plinth.Record) error {
		if calls++; calls == 3 {
			return boom
		}
		return nil
	})
	if fnErr != boom || err != nil || calls != 3 {
		t.Fatalf("fn failing at 3: %v %v after %d calls", fnErr, err, calls)
	}
	if produced > 3*8 {
		t.Errorf("the producer read on to %d after fn failed", produced)
	}

	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	fnErr, err = Run(ctx, 8, nil, counting(100000, &produced), func(plinth.Record) error {
		if calls++; calls == 10 {
			cancel()
		}
		return nil
	})
	if fnErr != nil || !errors.Is(err, context.Canceled) || calls != 10 {
		t.Fatalf("cancelled at 10: %v %v after %d calls", fnErr, err, calls)
	}

	prodErr := errors.New("lost")
	_, err = Run(t.Context(), 8, nil, func(emit func(plinth.Record) error) error {
		for range 20 {
			if err := emit(plinth.Record{}); err != nil {
				return err
			}
		}
		return prodErr
	}, func(plinth.Record) error { return nil })
	if err != prodErr {
		t.Fatalf("producer error: %v", err)
	}

	func() {
		defer func() {
			if p := recover(); p != "bad row" {
				t.Fatalf("recovered %v, want the producer's panic", p)
			}
		}()
		Run(t.Context(), 8, nil, func(emit func(plinth.Record) error) error { panic("bad row") }, func(plinth.Record) error { return nil })
	}()

	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after, %d before", n, before)
	}
}

// TestRunHandsMapsBack: with Maps, the producer gets the maps of records
// fn is done with, empty, and every record still reaches fn with its own
// data.
func TestRunHandsMapsBack(t *testing.T) {
	maps := NewMaps(4)
	seen := map[string]bool{}
	reused := 0
	var got []int64
	_, err := Run(t.Context(), 4, maps, func(emit func(plinth.Record) error) error {
		for i := range 100 {
			d := maps.Get(1)
			if len(d) != 0 {
				t.Fatalf("record %d: a handed-back map holds %v", i, d)
			}
			if id := fmt.Sprintf("%p", d); seen[id] {
				reused++
			} else {
				seen[id] = true
			}
			d["n"] = int64(i)
			if err := emit(plinth.Record{Data: d, Version: int64(i)}); err != nil {
				return err
			}
		}
		return nil
	}, func(r plinth.Record) error {
		if r.Data["n"] != r.Version {
			t.Fatalf("record %d carries %v", r.Version, r.Data)
		}
		got = append(got, r.Version)
		return nil
	})
	if err != nil || len(got) != 100 {
		t.Fatalf("%v, %d records", err, len(got))
	}
	if reused == 0 {
		t.Errorf("no map came back to the producer")
	}
}
