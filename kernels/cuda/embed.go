// Package cuda holds the CUDA C sources of the GPU backend's kernels. They are
// compiled at run time by NVRTC (package gpu) for the device's architecture; this
// file only embeds them so that the binary carries them.
package cuda

import "embed"

// Files holds every .cu kernel file and the .cuh headers they include.
//
//go:embed *.cu *.cuh
var Files embed.FS
