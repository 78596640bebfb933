//go:build !unix

// Package cputime reads the CPU time this process has used (see
// cputime_unix.go); elsewhere it reads 0, and CPU-time rates read 0 too.
package cputime

import "time"

// Process is unavailable here: it returns 0.
func Process() time.Duration { return 0 }
