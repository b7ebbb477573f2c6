//go:build !unix

package nats

import "os"

// lockDir does not lock on this platform: run one process per data
// directory.
func lockDir(dir string) (*os.File, error) { return nil, nil }

func unlockDir(f *os.File) {}
