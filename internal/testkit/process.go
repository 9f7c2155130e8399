//go:build unix

package testkit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Alive reports whether pid, or a member of the process group pid leads,
// still runs. Zombies do not count: what a child started is reparented to
// init, which may be slow to reap it (or, in some containers, never does).
// Without procfs it asks kill(2), which counts zombies too.
func Alive(pid int) bool {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil || len(stats) == 0 {
		return !errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH) || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		p, _ := strconv.Atoi(strings.Fields(string(b))[0])
		g, _ := strconv.Atoi(f[2])
		if p == pid || g == pid {
			return true
		}
	}
	return false
}

// StillRunning waits up to d, in all, for each process in pids and its
// process group to be gone (see Alive), and returns those that still run
// then: a SIGKILL to a group takes a moment to land, and the kernel a
// moment to reap.
func StillRunning(d time.Duration, pids ...int) []int {
	deadline := time.Now().Add(d)
	var left []int
	for _, pid := range pids {
		for Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // waiting for the kernel
		}
		if Alive(pid) {
			left = append(left, pid)
		}
	}
	return left
}
