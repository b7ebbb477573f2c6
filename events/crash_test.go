package events_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

// The crash test runs writers and a relay, with the embedded NATS server,
// in a child process (this test binary, running TestCrashChild), kills it
// with SIGKILL twice, and then checks that every committed change has
// exactly one event in the stream, in version order per record, and no
// rolled-back change has one.

const (
	crashChildEnv = "PLINTH_CRASH_CHILD_DIR"
	crashStoreEnv = "PLINTH_CRASH_CHILD_STORE"
	rollbackName  = "ROLLED-BACK"
)

func openURL(ctx context.Context, url string) (eventStore, error) {
	if path, ok := strings.CutPrefix(url, "sqlite://"); ok {
		return sqlite.Open(ctx, path)
	}
	return postgres.Open(ctx, url)
}

func TestCrashAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	for _, sc := range []struct {
		name string
		url  func(t *testing.T, dir string) string
	}{
		{"SQLite", func(t *testing.T, dir string) string { return "sqlite://" + filepath.Join(dir, "plinth.db") }},
		{"PostgreSQL", func(t *testing.T, dir string) string { return pgtest.Database(t) }},
	} {
		t.Run(sc.name, func(t *testing.T) {
			dir := t.TempDir()
			url := sc.url(t, dir)
			for run, d := range []time.Duration{1500 * time.Millisecond, time.Second} {
				cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
				cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashStoreEnv+"="+url)
				out := &strings.Builder{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(d) // not a wait: the child is killed at a moment of the test's choosing
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				err := cmd.Wait()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != -1 {
					t.Fatalf("run %d: the child was not killed but ended: %v\n%s", run+1, err, out)
				}
			}

			// Restart: a relay publishes what the dead ones left.
			ctx := context.Background()
			ds := plinthtest.Domains(t)
			st, err := openURL(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Prepare(ctx, ds); err != nil {
				t.Fatal(err)
			}
			srv, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Shutdown()
			nc, err := srv.Conn()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			pub, err := plinthnats.NewPublisher(ctx, nc, "development", ds)
			if err != nil {
				t.Fatal(err)
			}
			_, stop := startRelay(t, st, pub, events.RelayConfig{Holder: "after-crash", LeaseTTL: time.Second, Poll: 10 * time.Millisecond, Logger: quiet})
			drained(t, st, 30*time.Second)
			stop()

			// Every record's versions 1…current are in the stream once, in
			// order; nothing else is.
			e := plinthtest.Entity(t, ds, "residents")
			versions := map[string]int64{}
			var total int64
			q := plinth.Query{Limit: 1000}
			for {
				page, err := st.List(ctx, e, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page.Records {
					versions[plinth.KeyString(e.KeyOf(r))] = r.Version
					total += r.Version
				}
				if !page.More {
					break
				}
				q.After = e.KeyOf(page.Records[len(page.Records)-1])
			}
			msgs := natstest.ReadStream(t, pub.JetStream(), residentsStream)
			t.Logf("%d records, %d committed changes, %d events in the stream", len(versions), total, len(msgs))
			if total < 50 {
				t.Fatalf("only %d changes were committed before the kills", total)
			}
			seen := map[string]bool{}
			last := map[string]int64{}
			for _, m := range msgs {
				ev, err := plinth.DecodeEvent(m.Data())
				if err != nil {
					t.Fatal(err)
				}
				if seen[ev.ID] {
					t.Fatalf("event %s is in the stream twice", ev.ID)
				}
				seen[ev.ID] = true
				if strings.Contains(string(m.Data()), rollbackName) {
					t.Fatalf("a rolled-back change was published: %s", m.Data())
				}
				if ev.EntityVersion != last[ev.EntityID]+1 {
					t.Fatalf("record %s: event for version %d after version %d", ev.EntityID, ev.EntityVersion, last[ev.EntityID])
				}
				last[ev.EntityID] = ev.EntityVersion
			}
			for id, v := range versions {
				if last[id] != v {
					t.Fatalf("record %s is at version %d, its last event is for version %d", id, v, last[id])
				}
			}
			if int64(len(msgs)) != total {
				t.Fatalf("%d events for %d committed changes", len(msgs), total)
			}
		})
	}
}

// TestCrashChild is the child process of TestCrashAndRestart: eight writers
// and a relay, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("run by TestCrashAndRestart only")
	}
	ctx := context.Background()
	ds := plinthtest.Domains(t)
	st, err := openURL(ctx, os.Getenv(crashStoreEnv))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	srv, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Conn()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := plinthnats.NewPublisher(ctx, nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	relay := events.NewRelay(st, pub, events.RelayConfig{Holder: fmt.Sprint("child-", os.Getpid()), LeaseTTL: time.Second, Poll: 10 * time.Millisecond, Logger: quiet})
	go relay.Run(ctx)

	e := plinthtest.Entity(t, ds, "residents")
	c := plinth.EventContext{Environment: "development", CorrelationID: "crash"}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ids []any
			for i := 0; ; i++ {
				rollback := rand.IntN(5) == 0
				last := fmt.Sprintf("W%d-%d", w, i)
				if rollback {
					last = rollbackName
				}
				var created any
				err := st.Write(ctx, func(tx plinth.Tx) error {
					var entry plinth.OutboxEntry
					if len(ids) < 5 || rand.IntN(4) == 0 {
						data, err := e.Validate(map[string]any{"firstName": "Crash", "lastName": last}, true)
						if err != nil {
							return err
						}
						rec, err := tx.Insert(ctx, e, data)
						if err != nil {
							return err
						}
						entry, _, _ = plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, c)
						created = e.KeyOf(rec)
					} else {
						id := ids[rand.IntN(len(ids))]
						cur, err := tx.Get(ctx, e, id)
						if err != nil {
							return err
						}
						data := plinth.MergePatch(cur.Data, map[string]any{"lastName": last})
						rec, err := tx.Update(ctx, e, id, cur.Version, data)
						if err != nil {
							return err
						}
						entry, _, _ = plinth.BuildEvent(e, plinth.EventUpdated, &cur, &rec, c)
					}
					if err := tx.(plinth.EventTx).AppendEvent(ctx, entry); err != nil {
						return err
					}
					if rollback {
						return errRollback
					}
					return nil
				})
				switch {
				case errors.Is(err, errRollback):
				case err != nil:
					t.Error(err)
					return
				default:
					relay.Notify()
					if created != nil {
						ids = append(ids, created)
					}
				}
			}
		}()
	}
	wg.Wait()
}
