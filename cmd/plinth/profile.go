package main

import (
	"fmt"
	"os"
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

// runProfiled runs fn under startProfile, so the profile is complete
// before main exits.
func runProfiled(fn func() error) error {
	stop := startProfile()
	defer stop()
	return fn()
}
