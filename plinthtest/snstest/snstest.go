// Package snstest runs an SNS/SQS emulator for tests: goaws
// (github.com/Admiral-Piett/goaws), built from the Go module proxy into a
// temporary folder on first use, with the FIFO topics and raw-delivery SQS
// subscriptions a test asks for. Only tests import it.
package snstest

import (
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the goaws release tests run.
const Version = "v0.4.5"

// Region and Account are what the emulator puts in its ARNs.
const (
	Region  = "eu-west-2"
	Account = "123456789012"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// build installs goaws into a temporary folder once per test binary.
func build() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "plinth-goaws-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/Admiral-Piett/goaws/app/cmd@"+Version)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
		cmd.Dir = dir // outside Plinth's module: its go.mod stays as it is
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building goaws %s: %v\n%s", Version, err, out)
			return
		}
		binary = filepath.Join(dir, "cmd")
	})
	return binary, buildErr
}

// Emulator is a running goaws.
type Emulator struct {
	URL string // endpoint of both SNS and SQS
}

// Start runs goaws with each topic (a name such as
// "plinth-development-residents.fifo") subscribed by a raw-delivery queue
// named after it with "-listener" in place of ".fifo". When the Go module
// proxy cannot be reached the test is skipped, or fails under CI=true.
func Start(t testing.TB, topics ...string) *Emulator {
	t.Helper()
	bin, err := build()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var conf strings.Builder
	fmt.Fprintf(&conf, "Local:\n  Host: 127.0.0.1\n  Port: %d\n  Region: %s\n  AccountId: %q\n  LogToFile: false\n", port, Region, Account)
	conf.WriteString("  QueueAttributeDefaults:\n    VisibilityTimeout: 300\n    ReceiveMessageWaitTimeSeconds: 0\n  Queues: []\n  Topics:\n")
	for _, topic := range topics {
		fmt.Fprintf(&conf, "    - Name: %s\n      Subscriptions:\n        - QueueName: %s\n          Raw: true\n", topic, Queue(topic))
	}
	file := filepath.Join(t.TempDir(), "goaws.yaml")
	if err := os.WriteFile(file, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", file, "Local")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	e := &Emulator{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(e.URL + "/health")
		if err == nil {
			res.Body.Close()
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("goaws did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Queue is the queue subscribed to a topic.
func Queue(topic string) string { return strings.TrimSuffix(topic, ".fifo") + "-listener" }

// Message is one message received from a queue.
type Message struct {
	Body string
}

// Receive takes every message waiting in the queue (they stay hidden for
// five minutes, so each is returned once).
func (e *Emulator) Receive(t testing.TB, queue string) []Message {
	t.Helper()
	var out []Message
	for {
		res, err := http.PostForm(e.URL+"/queue/"+queue, url.Values{
			"Action": {"ReceiveMessage"}, "MaxNumberOfMessages": {"10"}, "WaitTimeSeconds": {"1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Result struct {
				Message []struct {
					Body string `xml:"Body"`
				} `xml:"Message"`
			} `xml:"ReceiveMessageResult"`
		}
		err = xml.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("receiving from %s: %d %v", queue, res.StatusCode, err)
		}
		if len(body.Result.Message) == 0 {
			return out
		}
		for _, m := range body.Result.Message {
			out = append(out, Message{Body: m.Body})
		}
	}
}
