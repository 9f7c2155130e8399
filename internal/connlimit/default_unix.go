//go:build unix

package connlimit

import "syscall"

// DefaultFor returns a connection cap that leaves room in the process's
// open-file limit: half of it, less a reserve for listeners, logs and the
// like, so that each client connection may have a connection to an
// instance beside it. At least 1; 0 (no cap) if the limit cannot be read.
func DefaultFor() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return capFor(r.Cur)
}
