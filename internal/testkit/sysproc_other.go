//go:build unix && !linux

package testkit

import "syscall"

// sysProcAttr has nothing to set here: no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
