// Package gpu is the CUDA backend: it loads the NVIDIA driver API, cuBLAS and
// NVRTC at run time with purego (no cgo, no CUDA toolkit at build time), compiles
// the kernels in kernels/cuda for the device's architecture, and runs the
// engine's forward primitive on device buffers with the semantics of
// model.Forward. Shards stream from pinned host memory into device memory on a
// copy stream overlapped with compute, with a byte-bounded device LRU of hot
// chunks.
package gpu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// libSpec names one shared library by the sonames tried in order.
type libSpec struct {
	what  string   // human name for messages
	names []string // sonames, most specific first
}

var (
	libCUDA   = libSpec{"the CUDA driver (libcuda, installed with the NVIDIA driver)", []string{"libcuda.so.1", "libcuda.so"}}
	libCUBLAS = libSpec{"cuBLAS", []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}}
	libNVRTC  = libSpec{"NVRTC (CUDA runtime compilation)", []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}}
)

// searchDirs lists the directories tried after the dynamic loader's own search
// (LD_LIBRARY_PATH, ld.so.cache): an explicit override, the toolkit locations
// and the distributions' library directories.
func searchDirs(getenv func(string) string) []string {
	var dirs []string
	for _, v := range []string{"CACHECLIP_CUDA_LIB_PATH", "LD_LIBRARY_PATH"} {
		for _, d := range filepath.SplitList(getenv(v)) {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
	}
	for _, v := range []string{"CUDA_PATH", "CUDA_HOME"} {
		if d := getenv(v); d != "" {
			dirs = append(dirs, filepath.Join(d, "lib64"), filepath.Join(d, "lib"))
		}
	}
	dirs = append(dirs, "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib")
	seen := map[string]bool{}
	out := dirs[:0]
	for _, d := range dirs {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// LibraryError says which library could not be opened and everywhere it was
// looked for, so that a user can install it or point CACHECLIP_CUDA_LIB_PATH at it.
type LibraryError struct {
	What  string
	Names []string
	Dirs  []string
	Last  error
}

func (e *LibraryError) Error() string {
	return fmt.Sprintf("cannot load %s: tried %s through the dynamic loader and in %s (set CACHECLIP_CUDA_LIB_PATH to the directory holding it): last error: %v",
		e.What, strings.Join(e.Names, ", "), strings.Join(e.Dirs, ":"), e.Last)
}

func (e *LibraryError) Unwrap() error { return e.Last }

// openFunc opens one shared library path; tests replace it.
type openFunc func(path string) (uintptr, error)

func dlopen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// findLibrary tries each soname through the loader's search, then in each
// directory; it returns the handle and the path that worked.
func findLibrary(spec libSpec, dirs []string, open openFunc) (uintptr, string, error) {
	var last error
	for _, n := range spec.names {
		h, err := open(n)
		if err == nil {
			return h, n, nil
		}
		last = err
	}
	for _, d := range dirs {
		for _, n := range spec.names {
			p := filepath.Join(d, n)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			h, err := open(p)
			if err == nil {
				return h, p, nil
			}
			last = err
		}
	}
	if last == nil {
		last = fmt.Errorf("not found")
	}
	return 0, "", &LibraryError{What: spec.what, Names: spec.names, Dirs: dirs, Last: last}
}

// symbols binds Go function variables to a library's exports, collecting the
// first missing one as an error instead of panicking as purego.RegisterLibFunc does.
type symbols struct {
	lib    string
	handle uintptr
	err    error
}

func (s *symbols) bind(fptr any, names ...string) {
	if s.err != nil {
		return
	}
	for _, n := range names {
		if addr, err := purego.Dlsym(s.handle, n); err == nil && addr != 0 {
			purego.RegisterFunc(fptr, addr)
			return
		}
	}
	s.err = fmt.Errorf("%s: symbol %s not found (library too old?)", s.lib, strings.Join(names, " / "))
}

// optional binds a symbol that may be absent; it reports whether it was found.
func (s *symbols) optional(fptr any, name string) bool {
	addr, err := purego.Dlsym(s.handle, name)
	if err != nil || addr == 0 {
		return false
	}
	purego.RegisterFunc(fptr, addr)
	return true
}
