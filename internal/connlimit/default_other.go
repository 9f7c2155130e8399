//go:build !unix

package connlimit

// DefaultFor returns 0 (no cap) where the open-file limit cannot be read.
func DefaultFor() int { return 0 }
