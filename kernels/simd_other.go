//go:build purego || !amd64

package kernels

// simdKernels: the purego build and other architectures run the generic set only.
func simdKernels() []*Kernels { return nil }
