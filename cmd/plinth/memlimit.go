package main

import (
	"math"
	"runtime/debug"
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
// soft, so a heap that needs more gets more (the collector then uses at
// most half the CPU).
func memoryLimit(cfg Config, getenv func(string) string) (int64, bool) {
	if !cfg.IsSet("memoryLimit") && getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	if cfg.MemoryLimit == 0 {
		return math.MaxInt64, true // Go's "no limit"
	}
	return cfg.MemoryLimit, true
}

// setMemoryLimit applies memoryLimit to the runtime.
func setMemoryLimit(cfg Config, getenv func(string) string) {
	if n, ok := memoryLimit(cfg, getenv); ok {
		debug.SetMemoryLimit(n)
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
