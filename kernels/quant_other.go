//go:build purego || !amd64

package kernels

// avx512Quant: the purego build and other architectures have only the
// portable quantized routines.
var avx512Quant *quantKernels
