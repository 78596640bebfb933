//go:build unix

package model_test

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) this process has used: on a shared,
// loaded machine a benchmark's CPU time per call says what its work costs when
// its wall time mostly says how long it waited for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
