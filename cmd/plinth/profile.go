package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfile writes a CPU profile of the whole run to the file named by
// PLINTH_CPUPROFILE, when set: how the seed and obfuscate figures in
// BENCHMARKS.md were analysed (go tool pprof bin/plinth FILE). The returned
// function ends the profile.
func startProfile() func() {
	path := os.Getenv("PLINTH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plinth: PLINTH_CPUPROFILE:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// writeMemProfile writes the allocation profile of the whole run (bytes
// and objects allocated per call site, and what is still live) to the file
// named by PLINTH_MEMPROFILE, when set: how serve's memory under writes was
// analysed (go tool pprof -sample_index=alloc_space bin/plinth FILE).
func writeMemProfile() {
	path := os.Getenv("PLINTH_MEMPROFILE")
	if path == "" {
		return
	}
	runtime.GC() // so the live figures are up to date
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plinth: PLINTH_MEMPROFILE:", err)
	}
}

// runProfiled runs fn under startProfile, so the profile is complete
// before main exits, and writes the memory profile after it.
func runProfiled(fn func() error) error {
	stop := startProfile()
	defer stop()
	defer writeMemProfile()
	return fn()
}
