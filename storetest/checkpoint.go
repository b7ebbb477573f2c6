package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

func checkpoint(t testing.TB, s plinth.Store, name string) (plinth.Checkpoint, bool) {
	t.Helper()
	c, found, err := s.Checkpoint(t.Context(), name)
	if err != nil {
		t.Fatalf("checkpoint %q: %v", name, err)
	}
	return c, found
}

// testCheckpoints: named checkpoints round-trip byte for byte, are
// overwritten in place, and a checkpoint set in a Write commits or rolls
// back with the data of that Write.
func (su *suite) testCheckpoints(t *testing.T) {
	s := su.open(t)
	if _, found := checkpoint(t, s, "migrate/people"); found {
		t.Fatal("a checkpoint that was never set is found")
	}
	before := plinth.Now()
	value := []byte{0, 1, 2, 0xff, 'k', 'e', 'y', 0}
	if err := s.SetCheckpoint(t.Context(), "migrate/people", value); err != nil {
		t.Fatal(err)
	}
	c, found := checkpoint(t, s, "migrate/people")
	if !found || c.Name != "migrate/people" || string(c.Value) != string(value) {
		t.Fatalf("checkpoint: %+v, found %v; want %q", c, found, value)
	}
	if c.UpdatedAt.Before(before) || c.UpdatedAt.After(plinth.Now().Add(time.Second)) {
		t.Errorf("checkpoint updatedAt %v; want the time it was set (after %v)", c.UpdatedAt, before)
	}
	time.Sleep(2 * time.Millisecond) // not a wait: so updatedAt moves on
	if err := s.SetCheckpoint(t.Context(), "migrate/people", []byte("lsn 42")); err != nil {
		t.Fatal(err)
	}
	if c2, _ := checkpoint(t, s, "migrate/people"); string(c2.Value) != "lsn 42" || !c2.UpdatedAt.After(c.UpdatedAt) {
		t.Errorf("overwritten checkpoint: %q at %v; want \"lsn 42\" after %v", c2.Value, c2.UpdatedAt, c.UpdatedAt)
	}
	if err := s.SetCheckpoint(t.Context(), "lake/empty", nil); err != nil {
		t.Fatal(err)
	}
	if c, found := checkpoint(t, s, "lake/empty"); !found || len(c.Value) != 0 {
		t.Errorf("empty checkpoint: %q, found %v", c.Value, found)
	}
	if err := s.SetCheckpoint(t.Context(), "", []byte("x")); err == nil {
		t.Error("a checkpoint without a name: no error")
	}
	su.checkCheckpointTx(t, s)
}

func (su *suite) checkCheckpointTx(t *testing.T, s plinth.Store) {
	e := su.categories
	boom := errors.New("boom")
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		if _, err := tx.Insert(t.Context(), e, validate(t, e, map[string]any{"code": "x", "title": "X"}, true)); err != nil {
			return err
		}
		if err := tx.SetCheckpoint(t.Context(), "migrate/people", []byte("rolled back")); err != nil {
			return err
		}
		if err := tx.SetCheckpoint(t.Context(), "new/one", []byte("rolled back")); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("failed Write: %v", err)
	}
	if c, _ := checkpoint(t, s, "migrate/people"); string(c.Value) != "lsn 42" {
		t.Errorf("checkpoint after a failed Write: %q, want \"lsn 42\" unchanged", c.Value)
	}
	if _, found := checkpoint(t, s, "new/one"); found {
		t.Error("a checkpoint first set in a failed Write is found")
	}
	err = s.Write(t.Context(), func(tx plinth.Tx) error {
		if _, err := tx.Insert(t.Context(), e, validate(t, e, map[string]any{"code": "y", "title": "Y"}, true)); err != nil {
			return err
		}
		if err := tx.SetCheckpoint(t.Context(), "migrate/people", []byte("y")); err != nil {
			return err
		}
		c, found, err := tx.Checkpoint(t.Context(), "migrate/people")
		if err != nil || !found || string(c.Value) != "y" {
			t.Errorf("Tx.Checkpoint after Tx.SetCheckpoint: %q, found %v (%v); want its own write", c.Value, found, err)
		}
		if _, found, err := tx.Checkpoint(t.Context(), "never/set"); err != nil || found {
			t.Errorf("Tx.Checkpoint of an unknown name: found %v (%v)", found, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := checkpoint(t, s, "migrate/people"); string(c.Value) != "y" || count(t, s, e) != 1 {
		t.Errorf("after a Write: checkpoint %q and %d categories; want \"y\" and 1", c.Value, count(t, s, e))
	}
}
