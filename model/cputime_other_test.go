//go:build !unix

package model_test

import "time"

// cpuTime is unavailable here; the CPU-time rates of the benchmarks read 0.
func cpuTime() time.Duration { return 0 }
