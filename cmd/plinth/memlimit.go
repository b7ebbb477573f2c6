package main

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// memoryLimit is the soft memory limit serve sets, and whether it sets
// one: memoryLimit when configured (0: none), else nothing when Go's own
// GOMEMLIMIT is set (the runtime has applied it), else the default.
//
// Why a default: under writes serve keeps a few tens of MiB live (the
// embedded JetStream's block buffers, the lake's open row groups in
// development), and with no limit the garbage collector lets the heap
// grow to twice the live memory before each collection, so the process's
// peak was garbage more than data (BENCHMARKS.md, "serve's memory under
// writes"). With the limit it collects sooner as the heap nears it; it is
// soft, so a heap that needs more gets more, and serve raises the default
// while the live heap would leave the collector too little room
// (guardHeadroom).
func memoryLimit(cfg Config, getenv func(string) string) (int64, bool) {
	if !cfg.IsSet("memoryLimit") && getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	if cfg.MemoryLimit == 0 {
		return math.MaxInt64, true // Go's "no limit"
	}
	return cfg.MemoryLimit, true
}

// setMemoryLimit applies memoryLimit to the runtime and returns the
// limit serve set (0 when it left the runtime's alone, math.MaxInt64 for
// none).
func setMemoryLimit(cfg Config, getenv func(string) string) int64 {
	n, ok := memoryLimit(cfg, getenv)
	if !ok {
		return 0
	}
	debug.SetMemoryLimit(n)
	return n
}

// headroomPercent is the least the soft memory limit leaves the heap to
// grow past what is live, in percent of what is live.
//
// Why: a soft limit barely above what must stay live makes the collector
// run back to back. Under creates on a faster machine serve kept 45 MB
// live (24 MiB of it the embedded JetStream's block buffers) under the
// 64 MiB default, so its heap goal was what was live: a collection every
// 5 ms, 40 % of serve's CPU, twice the CPU per create and half the
// creates per second at 2 connections (BENCHMARKS.md, "The soft memory
// limit's headroom"). With half the live heap of headroom the collector
// runs at most as often as at GOGC=50.
const headroomPercent = 50

// headroomBase is the limit guardHeadroom keeps headroom above: the one
// serve set (limit) when it is the default; 0 (none) when an operator
// configured one (to fit a container, say), which is kept as set, or when
// the runtime's GOMEMLIMIT applies.
func headroomBase(cfg Config, limit int64) int64 {
	if cfg.IsSet("memoryLimit") {
		return 0
	}
	return limit
}

// headroomCheck is how often serve looks at the live heap: a collection
// reports it, and under load they come many times a second.
const headroomCheck = 100 * time.Millisecond

// headroomLimit is the soft limit that leaves headroomPercent of live
// bytes of heap above them, given the Go memory that is not heap (stacks,
// the runtime's own), and never below base, serve's default limit.
func headroomLimit(base, live, nonHeap int64) int64 {
	want := nonHeap + live + live*headroomPercent/100
	if want < base {
		return base
	}
	return want
}

// guardHeadroom raises the soft memory limit above base while the live
// heap needs it and lowers it back as that shrinks, checking every
// period until ctx ends. The limit still bounds the heap: it lets garbage
// grow to half the live heap at most, not to GOGC's fourfold.
func guardHeadroom(ctx context.Context, base int64, period time.Duration) {
	if base <= 0 || base == math.MaxInt64 {
		return // no limit of serve's to guard
	}
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	t := time.NewTicker(period)
	defer t.Stop()
	set := base
	for {
		metrics.Read(samples)
		v := func(i int) int64 { return int64(samples[i].Value.Uint64()) }
		nonHeap := v(1) - v(2) - v(3) - v(4) - v(5)
		if limit := headroomLimit(base, v(0), nonHeap); limit != set {
			debug.SetMemoryLimit(limit)
			set = limit
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serveGCPercent is the garbage collector's GOGC serve runs at, under a
// soft memory limit. At Go's default (100) serve's reads keep only a few
// MiB live, so the collector ran some 13 times a second under load and
// took about a sixth of serve's CPU on lists; at 400 a list request costs
// a fifth to a quarter less CPU (BENCHMARKS.md, "Reads on PostgreSQL: CPU
// per request"), and the soft limit still bounds the heap when much is
// live (writes), as it did before.
const serveGCPercent = 400

// gcPercent is the GOGC serve sets, and whether it sets one: none when
// GOGC is set (the runtime has applied it) or when no soft memory limit
// is in effect (limit is the runtime's, math.MaxInt64 for none): without
// the limit the raised GOGC would let a large live heap grow fivefold.
func gcPercent(getenv func(string) string, limit int64) (int, bool) {
	if getenv("GOGC") != "" || limit == math.MaxInt64 {
		return 0, false
	}
	return serveGCPercent, true
}

// setGCPercent applies gcPercent to the runtime; after setMemoryLimit.
func setGCPercent(getenv func(string) string) {
	if p, ok := gcPercent(getenv, debug.SetMemoryLimit(-1)); ok {
		debug.SetGCPercent(p)
	}
}
