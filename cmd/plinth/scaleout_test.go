package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
)

// Three `plinth serve` on one PostgreSQL store, as behind a load balancer:
// writes spread over all three, one relay active at a time, the active
// one killed part-way (another takes over), every event in the stream
// exactly once, and the audit chain intact.
func TestScaleOutOnPostgreSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers")
	}
	store := pgtest.Database(t)
	bus, err := nats.StartEmbedded(nats.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Shutdown)

	// One data folder: the three share its development secrets, as
	// instances behind a balancer share one authSecret.
	dir := t.TempDir()
	args := []string{"--store", store, "--nats-url", bus.ClientURL(), "--demo-data=false"}
	var srvs []*server
	for range 3 {
		srvs = append(srvs, startServe(t, dir, args...))
	}
	token := srvs[0].token

	plinthtest.Eventually(t, 30*time.Second, func() bool { return activeRelays(t, srvs) == 1 },
		"not exactly one relay active")

	var mu sync.Mutex
	written := map[string]int{} // entity id → writes (create + updates)
	write := func(srv *server, i int) {
		id, etag := createResident(t, srv, token, i)
		// The update goes to another instance, at the version the first
		// one answered.
		other := srvs[(i+1)%len(srvs)]
		if killed(other) {
			other = srv
		}
		patchResident(t, other, token, id, etag)
		mu.Lock()
		written[id] += 2
		mu.Unlock()
	}
	spread := func(alive []*server, from, to int) {
		var wg sync.WaitGroup
		for w := range alive {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += len(alive) {
					write(alive[w], i)
				}
			}()
		}
		wg.Wait()
	}
	spread(srvs, 0, 90)

	// Kill the active relay's process without warning; another instance
	// takes the lease over, and writes go on on the two left.
	var victim int
	for i, s := range srvs {
		if relayActive(t, s) {
			victim = i
		}
	}
	srvs[victim].cmd.Process.Kill()
	srvs[victim].cmd.Wait()
	alive := append(append([]*server{}, srvs[:victim]...), srvs[victim+1:]...)
	spread(alive, 90, 150)
	plinthtest.Eventually(t, 60*time.Second, func() bool { return activeRelays(t, alive) == 1 },
		"no relay took over from the killed instance")

	// Every write's event in the stream, once.
	nc, err := bus.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream := nats.StreamName("development", "residents")
	want := 0
	for _, n := range written {
		want += n
	}
	plinthtest.Eventually(t, 60*time.Second, func() bool { return natstest.StreamCount(t, js, stream) >= want },
		"events missing from the stream")
	time.Sleep(time.Second) // anything doubled would arrive now
	seenEvent := map[string]bool{}
	perEntity := map[string]int{}
	for _, m := range natstest.ReadStream(t, js, stream) {
		var ev struct{ ID, EntityID string }
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if seenEvent[ev.ID] {
			t.Errorf("event %s published twice", ev.ID)
		}
		seenEvent[ev.ID] = true
		perEntity[ev.EntityID]++
	}
	if len(seenEvent) != want {
		t.Errorf("%d events in the stream, %d writes", len(seenEvent), want)
	}
	for id, n := range written {
		if perEntity[id] != n {
			t.Errorf("resident %s: %d events, %d writes", id, perEntity[id], n)
		}
	}

	for _, s := range alive {
		s.stop(t)
	}
	out, err := run(t, dir, nil, "audit", "verify", "--store", store)
	if err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

func killed(s *server) bool { return s.cmd.ProcessState != nil }

// activeRelays sums plinth_relay_active over the servers.
func activeRelays(t *testing.T, srvs []*server) int {
	n := 0
	for _, s := range srvs {
		if relayActive(t, s) {
			n++
		}
	}
	return n
}

func relayActive(t *testing.T, s *server) bool {
	t.Helper()
	res := get(t, s.base+"/metrics", "")
	sc := bufio.NewScanner(bytes.NewReader(res.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "plinth_relay_active "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f == 1
		}
	}
	return false
}

func createResident(t *testing.T, srv *server, token string, i int) (id, etag string) {
	body, _ := json.Marshal(map[string]any{"firstName": fmt.Sprintf("Scale%d", i), "lastName": "Out", "dateOfBirth": "1990-01-02"})
	res := send(t, srv, token, "POST", "/api/v1/residents", body, "")
	if res.StatusCode != 201 {
		t.Errorf("create on %s: %d", srv.base, res.StatusCode)
		return "", ""
	}
	var rec map[string]any
	json.NewDecoder(res.Body).Decode(&rec)
	res.Body.Close()
	return fmt.Sprint(rec["mosaicId"]), res.Header.Get("ETag")
}

func patchResident(t *testing.T, srv *server, token, id, etag string) {
	if id == "" {
		return
	}
	res := send(t, srv, token, "PATCH", "/api/v1/residents/"+id, []byte(`{"lastName":"Outer"}`), etag)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("update on %s: %d", srv.base, res.StatusCode)
	}
}

func send(t *testing.T, srv *server, token, method, path string, body []byte, ifMatch string) *http.Response {
	req, _ := http.NewRequest(method, srv.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
