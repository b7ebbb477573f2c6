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
