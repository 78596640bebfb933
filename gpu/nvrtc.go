package gpu

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

type nvrtcProgram uintptr

// nvrtc is the subset of NVRTC used to compile kernels/cuda at run time.
type nvrtc struct {
	path                      string
	nvrtcVersion              func(major, minor *int32) int32
	nvrtcGetErrorString       func(r int32) string
	nvrtcCreateProgram        func(p *nvrtcProgram, src string, name string, nHeaders int32, headers, includeNames unsafe.Pointer) int32
	nvrtcDestroyProgram       func(p *nvrtcProgram) int32
	nvrtcCompileProgram       func(p nvrtcProgram, nOpts int32, opts unsafe.Pointer) int32
	nvrtcGetPTXSize           func(p nvrtcProgram, n *uint64) int32
	nvrtcGetPTX               func(p nvrtcProgram, buf *byte) int32
	nvrtcGetCUBINSize         func(p nvrtcProgram, n *uint64) int32
	nvrtcGetCUBIN             func(p nvrtcProgram, buf *byte) int32
	nvrtcGetProgramLogSize    func(p nvrtcProgram, n *uint64) int32
	nvrtcGetProgramLog        func(p nvrtcProgram, buf *byte) int32
	nvrtcGetNumSupportedArchs func(n *int32) int32
	nvrtcGetSupportedArchs    func(archs *int32) int32
	hasCUBIN                  bool
	hasArchList               bool
}

// loadNVRTC opens NVRTC with the given directory list (searchDirs in production).
func loadNVRTC(dirs []string) (*nvrtc, error) {
	h, path, err := findLibrary(libNVRTC, dirs, dlopen)
	if err != nil {
		return nil, err
	}
	n := &nvrtc{path: path}
	s := &symbols{lib: path, handle: h}
	s.bind(&n.nvrtcVersion, "nvrtcVersion")
	s.bind(&n.nvrtcGetErrorString, "nvrtcGetErrorString")
	s.bind(&n.nvrtcCreateProgram, "nvrtcCreateProgram")
	s.bind(&n.nvrtcDestroyProgram, "nvrtcDestroyProgram")
	s.bind(&n.nvrtcCompileProgram, "nvrtcCompileProgram")
	s.bind(&n.nvrtcGetPTXSize, "nvrtcGetPTXSize")
	s.bind(&n.nvrtcGetPTX, "nvrtcGetPTX")
	s.bind(&n.nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize")
	s.bind(&n.nvrtcGetProgramLog, "nvrtcGetProgramLog")
	if s.err != nil {
		return nil, s.err
	}
	n.hasCUBIN = s.optional(&n.nvrtcGetCUBINSize, "nvrtcGetCUBINSize") && s.optional(&n.nvrtcGetCUBIN, "nvrtcGetCUBIN")
	n.hasArchList = s.optional(&n.nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs") && s.optional(&n.nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs")
	return n, nil
}

// Version is NVRTC's major and minor version.
func (n *nvrtc) Version() (int, int) {
	var a, b int32
	n.nvrtcVersion(&a, &b)
	return int(a), int(b)
}

// SupportedArchs lists the sm_XX numbers this NVRTC can target (ascending);
// nil when the library predates the query.
func (n *nvrtc) SupportedArchs() []int {
	if !n.hasArchList {
		return nil
	}
	var c int32
	if n.nvrtcGetNumSupportedArchs(&c) != 0 || c <= 0 {
		return nil
	}
	a := make([]int32, c)
	if n.nvrtcGetSupportedArchs(&a[0]) != 0 {
		return nil
	}
	out := make([]int, c)
	for i, v := range a {
		out[i] = int(v)
	}
	sort.Ints(out)
	return out
}

// Target is what a kernel source is compiled to.
type Target struct {
	Arch  int  // 80 for sm_80 / compute_80
	CUBIN bool // real-architecture binary; false: PTX the driver JIT-compiles
}

func (t Target) option() string {
	if t.CUBIN {
		return fmt.Sprintf("--gpu-architecture=sm_%d", t.Arch)
	}
	return fmt.Sprintf("--gpu-architecture=compute_%d", t.Arch)
}

func (t Target) String() string {
	if t.CUBIN {
		return fmt.Sprintf("sm_%d cubin", t.Arch)
	}
	return fmt.Sprintf("compute_%d ptx", t.Arch)
}

// chooseTarget picks the compile target for a device of compute capability cc:
// a CUBIN for exactly cc when NVRTC knows it, otherwise PTX for the newest
// architecture NVRTC knows below cc, which the driver compiles forward. An NVRTC
// too old to list its architectures gets a CUBIN request for cc and fails loudly
// if it cannot.
func chooseTarget(cc int, supported []int, hasCUBIN bool) (Target, error) {
	if len(supported) == 0 {
		return Target{Arch: cc, CUBIN: hasCUBIN}, nil
	}
	best := -1
	for _, a := range supported {
		if a == cc {
			return Target{Arch: cc, CUBIN: hasCUBIN}, nil
		}
		if a < cc && a > best {
			best = a
		}
	}
	if best < 0 {
		return Target{}, fmt.Errorf("nvrtc: device architecture sm_%d is older than every architecture this NVRTC supports (%v)", cc, supported)
	}
	return Target{Arch: best, CUBIN: false}, nil
}

// compileOptions are the NVRTC flags every kernel is built with. Fast-math stays
// off: the kernels are compared with the CPU reference within tight tolerances.
func compileOptions(t Target) []string {
	return []string{t.option(), "--std=c++14", "-default-device", "--fmad=true"}
}

// Source is one kernel file with the headers it includes.
type Source struct {
	Name    string
	Code    string
	Headers map[string]string // include name → text
}

// CompileError carries NVRTC's log, which names the file and line.
type CompileError struct {
	Source string
	Target Target
	Log    string
	Err    error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("nvrtc: compiling %s for %s: %v\n%s", e.Source, e.Target, e.Err, e.Log)
}

func (n *nvrtc) err(call string, r int32) error {
	return fmt.Errorf("nvrtc: %s: %s (%d)", call, n.nvrtcGetErrorString(r), r)
}

// cStrings holds NUL-terminated copies and an array of pointers to them, alive
// for as long as the value is.
type cStrings struct {
	bufs [][]byte
	ptrs []*byte
}

func newCStrings(ss []string) *cStrings {
	c := &cStrings{}
	for _, s := range ss {
		b := append([]byte(s), 0)
		c.bufs = append(c.bufs, b)
		c.ptrs = append(c.ptrs, &b[0])
	}
	return c
}

func (c *cStrings) ptr() unsafe.Pointer {
	if len(c.ptrs) == 0 {
		return nil
	}
	return unsafe.Pointer(&c.ptrs[0])
}

// Compile builds src for t and returns the CUBIN or PTX image.
func (n *nvrtc) Compile(src Source, t Target) ([]byte, error) {
	if t.CUBIN && !n.hasCUBIN {
		return nil, fmt.Errorf("nvrtc %s cannot emit CUBIN (needs NVRTC 11.1 or newer)", n.path)
	}
	names := make([]string, 0, len(src.Headers))
	for k := range src.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	texts := make([]string, len(names))
	for i, k := range names {
		texts[i] = src.Headers[k]
	}
	hdr, inc := newCStrings(texts), newCStrings(names)
	var prog nvrtcProgram
	if r := n.nvrtcCreateProgram(&prog, src.Code, src.Name, int32(len(names)), hdr.ptr(), inc.ptr()); r != 0 {
		return nil, n.err("nvrtcCreateProgram "+src.Name, r)
	}
	defer n.nvrtcDestroyProgram(&prog)
	opts := newCStrings(compileOptions(t))
	r := n.nvrtcCompileProgram(prog, int32(len(opts.ptrs)), opts.ptr())
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(inc)
	runtime.KeepAlive(opts)
	if r != 0 {
		return nil, &CompileError{Source: src.Name, Target: t, Log: n.log(prog), Err: n.err("nvrtcCompileProgram", r)}
	}
	var size uint64
	get, getSize, what := n.nvrtcGetPTX, n.nvrtcGetPTXSize, "PTX"
	if t.CUBIN {
		get, getSize, what = n.nvrtcGetCUBIN, n.nvrtcGetCUBINSize, "CUBIN"
	}
	if r := getSize(prog, &size); r != 0 || size == 0 {
		return nil, fmt.Errorf("nvrtc: %s: getting %s size: %w", src.Name, what, n.err("get size", r))
	}
	img := make([]byte, size)
	if r := get(prog, &img[0]); r != 0 {
		return nil, fmt.Errorf("nvrtc: %s: getting %s: %w", src.Name, what, n.err("get image", r))
	}
	return img, nil
}

func (n *nvrtc) log(p nvrtcProgram) string {
	var size uint64
	if n.nvrtcGetProgramLogSize(p, &size) != 0 || size <= 1 {
		return ""
	}
	b := make([]byte, size)
	if n.nvrtcGetProgramLog(p, &b[0]) != 0 {
		return ""
	}
	return strings.TrimRight(string(b), "\x00\n")
}

// moduleCache keeps compiled images on disk so a process start does not pay
// NVRTC's seconds again. The key covers everything that changes the image: the
// source and its headers, the target, the flags and the compiler's version.
type moduleCache struct {
	dir string
}

func defaultCacheDir(getenv func(string) string) string {
	if d := getenv("CACHECLIP_CUDA_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "cacheclip", "cuda")
	}
	return filepath.Join(os.TempDir(), "cacheclip-cuda")
}

func cacheKey(src Source, t Target, compilerVersion string) string {
	h := sha256.New()
	fmt.Fprintf(h, "cacheclip-kernel-v1\x00%s\x00%s\x00%s\x00", compilerVersion, t, strings.Join(compileOptions(t), " "))
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00", src.Name, len(src.Code), src.Code)
	names := make([]string, 0, len(src.Headers))
	for k := range src.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", k, len(src.Headers[k]), src.Headers[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c *moduleCache) path(key string, t Target) string {
	ext := ".ptx"
	if t.CUBIN {
		ext = ".cubin"
	}
	return filepath.Join(c.dir, key+ext)
}

// get returns a cached image, or compile's result, which it stores. A cache that
// cannot be written only costs the next start a recompile.
func (c *moduleCache) get(src Source, t Target, compilerVersion string, compile func() ([]byte, error)) (img []byte, hit bool, err error) {
	p := c.path(cacheKey(src, t, compilerVersion), t)
	// Any read failure is a miss: the cache only saves time.
	if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
		return b, true, nil
	}
	img, err = compile()
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(c.dir, 0o755); err == nil {
		tmp, err := os.CreateTemp(c.dir, ".tmp-*")
		if err == nil {
			_, werr := tmp.Write(img)
			cerr := tmp.Close()
			if werr == nil && cerr == nil {
				err = os.Rename(tmp.Name(), p)
			}
			if werr != nil || cerr != nil || err != nil {
				os.Remove(tmp.Name())
			}
		}
	}
	return img, false, nil
}
