//go:build unix

package model_test

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used, all threads. Benchmarks on
// the shared machine divide work by it as well as by wall time: a product
// that loses a core to another process for a while shows it in wall time
// only, so the CPU-time rate says how fast the kernel runs while it runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
