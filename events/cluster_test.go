package events_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/events"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
)

// freePorts reserves n loopback ports (closed again, so a server can take
// them; the kernel does not hand them out again at once).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		defer ln.Close()
	}
	return ports
}

// node is one nats-server process of a test cluster.
type node struct {
	name, url string
	cmd       *exec.Cmd
}

// startCluster runs a three-node NATS cluster with JetStream as three
// nats-server processes (built from the module nats-server, which Plinth
// embeds) on loopback ports, each with its own store folder.
func startCluster(t testing.TB) []*node {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("building nats-server: %v\n%s", err, out)
	}
	ports := freePorts(t, 6)
	var routes []string
	for _, p := range ports[3:] {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var nodes []*node
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i])}
		n.cmd = exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i]), "-js", "-sd", t.TempDir(),
			"--server_name", n.name, "--cluster_name", "plinth-test", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.cmd.Process.Kill(); n.cmd.Wait() })
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		plinthtest.Eventually(t, 20*time.Second, func() bool {
			c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "nats://"))
			if err == nil {
				c.Close()
			}
			return err == nil
		}, "NATS node %s did not start", n.name)
	}
	return nodes
}

// A three-node JetStream cluster with R3 streams: the node leading the
// stream is stopped while writes go on; the relay fails over to the
// others, and every committed event is in the stream once, in order.
func TestClusterLosesNothingWhenANodeStops(t *testing.T) {
	ds := plinthtest.Domains(t)
	st := openSQLite(t, ds)
	nodes := startCluster(t)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	nc, err := plinthnats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var pub *plinthnats.Publisher
	// The cluster elects its JetStream leader a moment after starting.
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		pub, err = plinthnats.NewPublisher(context.Background(), nc, "development", ds, plinthnats.WithReplicas(3))
		return err == nil
	}, "no R3 stream on the cluster: %v", plinthtest.Last(&err))
	stream, err := pub.JetStream().Stream(context.Background(), residentsStream)
	if err != nil {
		t.Fatal(err)
	}
	info := stream.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream is not replicated on three nodes: %+v %+v", info.Config, info.Cluster)
	}
	leader := info.Cluster.Leader

	w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
	startRelay(t, st, pub, events.RelayConfig{Holder: "only", Poll: 20 * time.Millisecond, Batch: 25, Logger: quiet})
	writeLoad(t, w, 4, 60)
	var survivor *node
	for _, n := range nodes {
		if n.name != leader {
			survivor = n
		}
	}
	if survivor == nil || leader == "" {
		t.Fatalf("no stream leader among the nodes (%q)", leader)
	}
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		time.Sleep(50 * time.Millisecond) // while the second half is written
		for _, n := range nodes {
			if n.name == leader {
				n.cmd.Process.Kill() // no goodbye: SIGKILL
			}
		}
	}()
	writeLoad(t, w, 4, 60)
	<-killed

	// Read back from a node that stayed up, once the two left have
	// elected a new stream leader and the relay caught up.
	rc, err := plinthnats.Connect(survivor.url)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	js, _ := jetstream.New(rc)
	var now string
	var got int
	plinthtest.Eventually(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, residentsStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		now, got = info.Cluster.Leader, int(info.State.Msgs)
		return now != "" && got >= w.total()
	}, "after killing the stream leader %s: leader %q, %d of the events", leader, plinthtest.Last(&now), plinthtest.Last(&got))
	if now == leader {
		t.Fatalf("the killed node %s still leads the stream", leader)
	}
	waitForCount(t, st, js, residentsStream, w.total(), 30*time.Second)
	// Reading back makes a consumer, which goes through the cluster's meta
	// leader: the killed node may have been that too, and on a busy
	// machine the two left can take a while to elect another.
	var cerr error
	plinthtest.Eventually(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var c jetstream.Consumer
		if c, cerr = js.OrderedConsumer(ctx, residentsStream, jetstream.OrderedConsumerConfig{}); cerr == nil {
			_, cerr = c.Next(jetstream.FetchMaxWait(2 * time.Second))
		}
		return cerr == nil
	}, "no consumer on the cluster after the kill: %v", plinthtest.Last(&cerr))
	w.checkExactlyOnce(t, js, residentsStream)
}
