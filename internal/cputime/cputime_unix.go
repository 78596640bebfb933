//go:build unix

// Package cputime reads the CPU time this process has used. Benchmarks on a
// shared machine divide work by it as well as by wall time: a run that loses
// a core to another process for a while shows it in wall time only, so the
// CPU-time rate says how fast the code runs while it runs.
package cputime

import (
	"syscall"
	"time"
)

// Process is the user and system CPU time of this process so far, all
// threads; 0 where the kernel does not say.
func Process() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
