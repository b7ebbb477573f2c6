package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

func upsert(t testing.TB, s plinth.Store, e *plinth.Entity, data map[string]any) plinth.UpsertResult {
	t.Helper()
	var res plinth.UpsertResult
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		var err error
		res, err = tx.Upsert(t.Context(), e, data)
		return err
	})
	if err != nil {
		t.Fatalf("upsert %s: %v", e.Name, err)
	}
	return res
}

// testUpsert: Upsert creates, replaces or leaves a record, and says which;
// applying the same data again changes nothing, not even the version.
func (su *suite) testUpsert(t *testing.T) {
	s := su.open(t)
	e := su.categories
	a := validate(t, e, map[string]any{"code": "a", "title": "Garden", "rank": 1}, true)
	r := upsert(t, s, e, a)
	if r.Change != plinth.Created || r.Record.Version != 1 || r.Before != nil {
		t.Fatalf("first upsert: %s, version %d, before %v; want created, 1, nil", r.Change, r.Record.Version, r.Before)
	}
	checkRecord(t, "an upserted record", get(t, s, e, "a"), r.Record)
	again := upsert(t, s, e, a)
	if again.Change != plinth.Unchanged || again.Record.Version != 1 || again.Before == nil {
		t.Fatalf("the same upsert again: %s, version %d; want unchanged, 1, with the record before", again.Change, again.Record.Version)
	}
	checkRecord(t, "after an unchanged upsert", get(t, s, e, "a"), r.Record)

	b := validate(t, e, map[string]any{"code": "a", "title": "Gardening"}, false) // rank removed
	u := upsert(t, s, e, b)
	if u.Change != plinth.Updated || u.Record.Version != 2 || u.Before == nil || u.Before.Version != 1 {
		t.Fatalf("upsert of other data: %s, version %d; want updated, 2, with version 1 before", u.Change, u.Record.Version)
	}
	checkData(t, "the record before an upsert", u.Before.Data, a)
	checkData(t, "an upsert that removes a field", get(t, s, e, "a").Data, b)
	if got := get(t, s, e, "a"); got.Version != 2 || !got.CreatedAt.Equal(r.Record.CreatedAt) {
		t.Errorf("after an update by upsert: version %d, created %v; want 2 and the first createdAt", got.Version, got.CreatedAt)
	}
	if again := upsert(t, s, e, b); again.Change != plinth.Unchanged || get(t, s, e, "a").Version != 2 {
		t.Errorf("replaying an upsert: %s, version %d; want unchanged at 2", again.Change, get(t, s, e, "a").Version)
	}

	// A key spelt otherwise (an upper-case UUID, a plain int) is the same key.
	id := uuid.NewString()
	card := validate(t, su.cards, map[string]any{"cardId": id, "label": "Door"}, false)
	upsert(t, s, su.cards, card)
	upper := withKey(su.cards, card, strings.ToUpper(id))
	if r := upsert(t, s, su.cards, upper); r.Change != plinth.Unchanged || r.Record.Version != 1 {
		t.Errorf("upsert with the UUID in upper case: %s, version %d; want unchanged, 1", r.Change, r.Record.Version)
	}
	person := validate(t, su.people, map[string]any{"personId": 700, "firstName": "Kept", "lastName": "Id"}, false)
	upsert(t, s, su.people, person)
	if r := upsert(t, s, su.people, withKey(su.people, person, 700)); r.Change != plinth.Unchanged {
		t.Errorf("upsert with the key as an int: %s, want unchanged", r.Change)
	}
	// A given generated key moves the generator past it, as Insert does.
	next := insert(t, s, su.people, map[string]any{"firstName": "Next", "lastName": "One"})
	if k, _ := su.people.KeyOf(next).(int64); k <= 700 {
		t.Errorf("insert after upserting key 700 got key %v; want a greater one", su.people.KeyOf(next))
	}

	// Without a key there is nothing to upsert by; in a failed Write
	// nothing is kept.
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		_, err := tx.Upsert(t.Context(), e, map[string]any{"title": "No key"})
		return err
	})
	if err == nil {
		t.Error("upsert without a key: no error")
	}
	boom := errors.New("boom")
	err = s.Write(t.Context(), func(tx plinth.Tx) error {
		for i := range 3 {
			d := validate(t, e, map[string]any{"code": fmt.Sprintf("z%d", i), "title": "Gone"}, true)
			if _, err := tx.Upsert(t.Context(), e, d); err != nil {
				return err
			}
		}
		if _, err := tx.Upsert(t.Context(), e, validate(t, e, map[string]any{"code": "a", "title": "Gone"}, true)); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("failed Write: %v", err)
	}
	if n := count(t, s, e); n != 1 {
		t.Errorf("categories after a failed Write of upserts: %d, want 1", n)
	}
	checkData(t, "after a failed Write of upserts", get(t, s, e, "a").Data, b)
}

// testGeneratedUUIDs: generated UUID keys are version 7 on every store, so
// they grow with time: later records get greater keys.
func (su *suite) testGeneratedUUIDs(t *testing.T) {
	s := su.open(t)
	e := su.cards
	prev := ""
	check := func(what string, key any) {
		t.Helper()
		k, _ := key.(string)
		u, err := uuid.Parse(k)
		if err != nil || u.Version() != 7 {
			t.Fatalf("%s: key %v is not a version 7 UUID (%v)", what, key, err)
		}
		if k <= prev {
			t.Fatalf("%s: key %s is not greater than the one before, %s", what, k, prev)
		}
		prev = k
	}
	for i := range 20 {
		check(fmt.Sprintf("insert %d", i), e.KeyOf(insert(t, s, e, map[string]any{"label": fmt.Sprintf("A %02d", i)})))
	}
	cards := make([]map[string]any, 300)
	for i := range cards {
		cards[i] = validate(t, e, map[string]any{"label": fmt.Sprintf("B %03d", i)}, true)
	}
	if err := s.BulkInsert(t.Context(), e, cards); err != nil {
		t.Fatal(err)
	}
	for i, r := range listAll(t, s, e, nil, 100)[20:] {
		if r.Data["label"] != fmt.Sprintf("B %03d", i) {
			t.Fatalf("card %d in key order is %v: bulk keys must grow in the order given", i, r.Data["label"])
		}
		check(fmt.Sprintf("bulk record %d", i), e.KeyOf(r))
	}
}

// testConcurrentUpserts: writers upserting the same new key at once all
// succeed: one creates the record, each other one updates it or finds it
// unchanged, and the version counts the updates.
func (su *suite) testConcurrentUpserts(t *testing.T) {
	s := su.open(t)
	for round := range 5 { // the race is narrow: run it several times
		su.raceUpserts(t, s, fmt.Sprintf("race-%d", round))
	}
}

func (su *suite) raceUpserts(t *testing.T, s plinth.Store, code string) {
	e := su.categories
	const writers = 8
	var wg sync.WaitGroup
	results := make([]plinth.UpsertResult, writers)
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			data := map[string]any{"code": code, "title": fmt.Sprintf("Writer %d", i%3)}
			errs[i] = s.Write(t.Context(), func(tx plinth.Tx) error {
				var err error
				results[i], err = tx.Upsert(t.Context(), e, data)
				return err
			})
		}()
	}
	close(start)
	wg.Wait()
	created, updated := 0, 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("writer %d of %s: %v", i, code, errs[i])
		}
		switch r.Change {
		case plinth.Created:
			created++
		case plinth.Updated:
			updated++
		}
	}
	if got := get(t, s, e, code); created != 1 || got.Version != int64(1+updated) {
		t.Errorf("%d concurrent upserts of %s: %d created, %d updated, final version %d; want 1 created and version %d",
			writers, code, created, updated, got.Version, 1+updated)
	}
}
