//go:build !unix

package lake

import "os"

// lockSpool does nothing where flock is missing: CleanTemp then removes
// every temporary file, as it did before files were spooled.
func lockSpool(*os.File) error { return nil }

func spoolInUse(string) bool { return false }
