package main

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/config"
)

func configFromFlags(t *testing.T, args ...string) Config {
	t.Helper()
	cmd := &cobra.Command{}
	addConfigFlags(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve sets its default soft memory limit unless Go's GOMEMLIMIT says
// otherwise; a configured memoryLimit wins over both, 0 lifting the limit.
func TestMemoryLimit(t *testing.T) {
	noEnv := func(string) string { return "" }
	goEnv := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "200MiB"
		}
		return ""
	}
	for _, c := range []struct {
		name   string
		args   []string
		getenv func(string) string
		want   int64
		set    bool
	}{
		{"default", nil, noEnv, config.DefaultMemoryLimit, true},
		{"GOMEMLIMIT left to Go", nil, goEnv, 0, false},
		{"configured", []string{"--memory-limit", "100000000"}, noEnv, 100000000, true},
		{"configured beats GOMEMLIMIT", []string{"--memory-limit", "100000000"}, goEnv, 100000000, true},
		{"0 is no limit", []string{"--memory-limit", "0"}, goEnv, math.MaxInt64, true},
	} {
		got, set := memoryLimit(configFromFlags(t, c.args...), c.getenv)
		if got != c.want || set != c.set {
			t.Errorf("%s: memoryLimit = %d, %v; want %d, %v", c.name, got, set, c.want, c.set)
		}
	}
	cmd := &cobra.Command{}
	addConfigFlags(cmd)
	_ = cmd.Flags().Parse([]string{"--memory-limit", "-1"})
	if _, err := config.Load(cmd.Flags()); err == nil {
		t.Error("a negative memory limit was accepted")
	}
}

// serve raises GOGC only under a soft memory limit and only when GOGC is
// not set.
func TestGCPercent(t *testing.T) {
	env := func(gogc string) func(string) string {
		return func(k string) string {
			if k == "GOGC" {
				return gogc
			}
			return ""
		}
	}
	for _, c := range []struct {
		gogc  string
		limit int64
		want  int
		ok    bool
	}{
		{"", 64 << 20, serveGCPercent, true},
		{"", math.MaxInt64, 0, false}, // no limit: a large live heap would grow fivefold
		{"150", 64 << 20, 0, false},   // GOGC wins
		{"off", 64 << 20, 0, false},
	} {
		got, ok := gcPercent(env(c.gogc), c.limit)
		if got != c.want || ok != c.ok {
			t.Errorf("GOGC %q, limit %d: %d, %v; want %d, %v", c.gogc, c.limit, got, ok, c.want, c.ok)
		}
	}
	if serveGCPercent <= 100 {
		t.Errorf("serveGCPercent %d is not above Go's default", serveGCPercent)
	}
}

// Only the default limit gives way to the live heap: a configured one is
// kept as set, and GOMEMLIMIT is the runtime's.
func TestHeadroomBase(t *testing.T) {
	for _, c := range []struct {
		args   []string
		getenv func(string) string
		want   int64
	}{
		{nil, func(string) string { return "" }, config.DefaultMemoryLimit},
		{nil, func(k string) string { return map[string]string{"GOMEMLIMIT": "200MiB"}[k] }, 0},
		{[]string{"--memory-limit", "100000000"}, func(string) string { return "" }, 0},
		{[]string{"--memory-limit", "0"}, func(string) string { return "" }, 0},
	} {
		cfg := configFromFlags(t, c.args...)
		limit, _ := memoryLimit(cfg, c.getenv)
		if got := headroomBase(cfg, limit); got != c.want {
			t.Errorf("%v, GOMEMLIMIT %q: headroomBase = %d, want %d", c.args, c.getenv("GOMEMLIMIT"), got, c.want)
		}
	}
}

// The soft limit leaves half the live heap of headroom, and never goes
// below the configured limit.
func TestHeadroomLimit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct{ base, live, nonHeap, want int64 }{
		{64 * mib, 10 * mib, 8 * mib, 64 * mib},               // plenty of room: the configured limit
		{64 * mib, 45 * mib, 12 * mib, 12*mib + 45*mib*3/2},   // the heap goal would be what is live
		{64 * mib, 200 * mib, 10 * mib, 10*mib + 200*mib*3/2}, // far above: still half again
		{256 * mib, 100 * mib, 20 * mib, 256 * mib},           // a larger configured limit stands
	} {
		if got := headroomLimit(c.base, c.live, c.nonHeap); got != c.want {
			t.Errorf("headroomLimit(%d, %d, %d) = %d, want %d", c.base, c.live, c.nonHeap, got, c.want)
		}
	}
}

// guardHeadroom lifts the runtime's soft limit when the live heap nears
// it, and puts the configured limit back once the heap has shrunk.
func TestGuardHeadroomFollowsTheLiveHeap(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	// The base is well above what the test binary itself keeps live (a
	// few MiB to a few tens after the package's other tests), so that the
	// limit can come back to it.
	const base = 64 << 20
	live := make([]byte, 128<<20)
	for i := range live {
		live[i] = byte(i)
	}
	runtime.GC()
	debug.SetMemoryLimit(base)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { guardHeadroom(ctx, base, time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	waitForLimit := func(what string, ok func(int64) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(debug.SetMemoryLimit(-1)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the soft limit is %d", what, debug.SetMemoryLimit(-1))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitForLimit("128 MiB live under a 64 MiB limit", func(l int64) bool { return l >= 192<<20 })
	runtime.KeepAlive(live)
	live = nil
	runtime.GC()
	waitForLimit("the heap freed", func(l int64) bool { return l == base })
}
