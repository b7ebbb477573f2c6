//go:build unix

package lake

import (
	"errors"
	"os"
	"syscall"
)

// lockSpool locks a file being written (flock), so that CleanTemp in
// another process sees it is in use; the lock goes with the process.
func lockSpool(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// spoolInUse reports whether a live process holds the lock of the file.
func spoolInUse(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}
