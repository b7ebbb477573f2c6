package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// testConcurrentGets: many Gets at once, of the three kinds of key, in
// every form a read asks for, known and unknown keys and the same key
// twice, each get exactly what the same Get reads alone. (A store may
// answer concurrent Gets with shared queries; each must still get its own
// record, or ErrNotFound.)
func (su *suite) testConcurrentGets(t *testing.T) {
	s := su.open(t)
	type target struct {
		e  *plinth.Entity
		id any
	}
	var targets []target
	for i := range 12 {
		p := insert(t, s, su.people, map[string]any{"firstName": fmt.Sprintf("Ada %d", i), "lastName": "Lovelace",
			"tags": []any{"t", fmt.Sprint(i)}, "profile": map[string]any{"nickname": fmt.Sprint("n", i)}})
		c := insert(t, s, su.cards, map[string]any{"label": fmt.Sprintf("card %d", i), "holderId": i})
		g := insert(t, s, su.categories, map[string]any{"code": fmt.Sprintf("code-%d é", i), "title": fmt.Sprint("title ", i)})
		targets = append(targets, target{su.people, su.people.KeyOf(p)}, target{su.cards, su.cards.KeyOf(c)},
			target{su.categories, su.categories.KeyOf(g)})
	}
	targets = append(targets, target{su.people, int64(987654321)}, target{su.cards, uuid.NewString()},
		target{su.categories, "no-such-code"}, targets[0], targets[1], targets[2])
	forms := []func(context.Context) context.Context{
		func(ctx context.Context) context.Context { return ctx },
		plinth.WithNestedJSON,
		func(ctx context.Context) context.Context { return plinth.WithRecordJSON(plinth.WithNestedJSON(ctx)) },
	}
	read := func(ctx context.Context, tg target) ([]byte, error) {
		r, err := s.Get(ctx, tg.e, tg.id)
		if err != nil {
			return nil, err
		}
		return fmt.Appendf(tg.e.MarshalRecord(r), " %v %d %v %v", tg.e.KeyOf(r), r.Version,
			r.CreatedAt.UnixMicro(), r.UpdatedAt.UnixMicro()), nil
	}
	alone := make([][]byte, len(targets))
	for i, tg := range targets {
		b, err := read(t.Context(), tg)
		if err != nil && !errors.Is(err, plinth.ErrNotFound) {
			t.Fatalf("get %s %v: %v", tg.e.Name, tg.id, err)
		}
		alone[i] = b
	}
	const rounds = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for round := range rounds {
		for i, tg := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := forms[(i+round)%len(forms)](t.Context())
				got, err := read(ctx, tg)
				var problem string
				switch {
				case alone[i] == nil && !errors.Is(err, plinth.ErrNotFound):
					problem = fmt.Sprintf("get unknown %s %v at once with others: %v, want ErrNotFound", tg.e.Name, tg.id, err)
				case alone[i] != nil && err != nil:
					problem = fmt.Sprintf("get %s %v at once with others: %v", tg.e.Name, tg.id, err)
				case !bytes.Equal(got, alone[i]):
					problem = fmt.Sprintf("get %s %v at once with others read\n%s\nalone\n%s", tg.e.Name, tg.id, got, alone[i])
				}
				if problem != "" {
					mu.Lock()
					failures = append(failures, problem)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for i, f := range failures {
		if i == 5 {
			t.Errorf("… and %d more", len(failures)-5)
			break
		}
		t.Error(f)
	}
}
