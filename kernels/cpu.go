package kernels

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

// EnvKernels names the environment variable that selects a kernel set when a Pool is
// created: "generic" forces the portable Go path, "avx2" or "avx512" ask for a SIMD
// path (ignored when the CPU lacks it), empty or "auto" picks the best one.
const EnvKernels = "CACHECLIP_KERNELS"

// Kernels is one complete set of compute routines. A set is chosen once (Detect) and
// stored in the Pool, so hot loops never consult CPU flags or the environment. Every
// SIMD set has the same results as the generic set up to floating-point rounding.
type Kernels struct {
	name string
	// l1d and l2 are the per-core data cache sizes in bytes that the product's
	// blocking is sized by, l1Ways and l2Ways their associativity, which the
	// aliasing rules follow (0: not known, see caches and cacheWays).
	l1d, l2, l1Ways, l2Ways int

	// gemm is the register-blocked micro-kernel: C[mr][nr] (+)= Aᵀ·B over kc steps,
	// where A rows (mr values each) are lda floats apart (mr when packed), B rows
	// (nr values) ldb floats apart and C rows ldc floats apart.
	gemm   func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)
	mr, nr int
	// gemmRows is gemm with A read in place: its mr rows are lda floats apart
	// and row i's k-th value is a[i·lda+k] (nil when the set has none).
	gemmRows func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)
	// gemmRowsPf is gemmRows for B packed with ldb = nr that also prefetches
	// the mr rows at pf (lda apart) over the same kc columns: the next panel's
	// activations, fetched while this one computes (nil when the set has none).
	gemmRowsPf func(kc int, a *float32, lda int, b *float32, pf *float32, c *float32, ldc int, acc int)
	// gemmRowsPfB and gemmPfB are gemmRowsPf and gemm that also prefetch
	// aheadChunk(kc) bytes at pb into L2, four lines per 16 steps: a chunk of
	// the weight block the product multiplies next (blockAhead; nil when the
	// set has none).
	gemmRowsPfB func(kc int, a *float32, lda int, b *float32, pf *float32, pb unsafe.Pointer, c *float32, ldc int, acc int)
	gemmPfB     func(kc int, a *float32, lda int, b *float32, ldb int, pb unsafe.Pointer, c *float32, ldc int, acc int)
	// gemm4 and gemm4Rows are gemm and gemmRows for a 4×nr tile (nil when the
	// set has none): decode attention's few queries per KV head (1–7) would
	// leave most of an mr-row tile's FMAs on rows of zeros.
	gemm4, gemm4Rows func(kc int, a *float32, lda int, b *float32, ldb int, c *float32, ldc int, acc int)
	// gemmBF16 is the VDPBF16PS micro-kernel over bf16 pairs (nil when absent):
	// A packed [kc/2][mr][2], B packed [kc/2][nr][2], both bf16.
	gemmBF16 func(kp int, a, b *uint16, c *float32, ldc int, acc int)

	// gemvPanel* compute out[0:32] (+)= Σ_{t<k} x[t]·W[t][0:32] over one
	// weight panel (panels.go; acc != 0 adds): a lone decode step's product
	// (nil when the set has none).
	gemvPanelF32                func(k int, w *float32, x *float32, out *float32, acc int)
	gemvPanelBF16, gemvPanelF16 func(k int, w *uint16, x *float32, out *float32, acc int)
	// gemmPanel8* are the eight-row panel products of a batched decode step
	// (panels_batch.go; nil when the set has none); pf is the address
	// prefetched along with the weights.
	gemmPanel8F32                 func(kc int, w *float32, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)
	gemmPanel8BF16, gemmPanel8F16 func(kc int, w *uint16, x *float32, ldx int, c *float32, ldc int, acc int, pf uintptr)

	// gemv4 computes out[r] = Σ_c w[r·ldw+c]·x[c] for r < 4 over the first k
	// elements, k a multiple of 32 (the caller adds the tail).
	gemv4F32  func(k int, w *float32, ldw int, x *float32, out *float32)
	gemv4F16  func(k int, w *uint16, ldw int, x *float32, out *float32)
	gemv4BF16 func(k int, w *uint16, ldw int, x *float32, out *float32)
	// gemv44 is the same for four activation rows ldx floats apart:
	// out[4·r+i] = row r · vector i. Nil when the set has none.
	gemv44F32  func(k int, w *float32, ldw int, x *float32, ldx int, out *float32)
	gemv44F16  func(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)
	gemv44BF16 func(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)
	// gemv44BF16s is gemv44BF16 for activations split even/odd per 32-block
	// (splitEvenOdd), which lets the kernel widen bf16 with half the ops. Nil
	// when the set has none.
	gemv44BF16s func(k int, w *uint16, ldw int, x *float32, ldx int, out *float32)
	// splitEvenOdd is splitEvenOdd (len(src) a multiple of 32) in assembly;
	// set with gemv44BF16s.
	splitEvenOdd func(dst, src []float32)

	dot  func(a, b []float32) float32
	axpy func(a float32, x, y []float32)
	add  func(dst, x []float32)
	// scaleMul writes dst[i] = x[i]·s·w[i].
	scaleMul func(dst, x, w []float32, s float32)
	siluMul  func(gate, up []float32)
	// expSub writes x[i] = exp(x[i]-m) and returns the sum.
	expSub func(x []float32, m float32) float32
	// expSubV writes x[i] = exp(x[i]-m[i]) and adds it to acc[i].
	expSubV func(x, m, acc []float32)
	// vmax writes dst[i] = max(dst[i], x[i]).
	vmax func(dst, x []float32)
	// colMax16 and expRows16 are colMax and expRows on one strip of 16
	// columns (nil: the row-at-a-time loops over vmax and expSubV).
	colMax16  func(p *float32, ld, n int, dst *float32)
	expRows16 func(p *float32, ld, n int, m, acc *float32)
	// scale multiplies x by s in place.
	scale   func(x []float32, s float32)
	bf16F32 func(dst []float32, src []uint16)
	f16F32  func(dst []float32, src []uint16)
	f32F16  func(dst []uint16, src []float32)
	f32BF16 func(dst []uint16, src []float32)
	// packPanel transposes nr rows (lds floats apart) of kc16 floats, a multiple
	// of 16, into a [kc16][nr] panel; nil means the Go loop in packB.
	packPanel func(kc16 int, src *float32, lds int, dst *float32)
	// packPanelBF16 and packPanelF16 are packPanel for 16-bit rows, widening
	// as they load (nil: widen into a buffer, then packPanel).
	packPanelBF16, packPanelF16 func(kc16 int, src *uint16, lds int, dst *float32)
	// packRows is the same transposition for mr rows (the attention K tiles).
	packRows func(d16 int, src *float32, lds int, dst *float32)
	// ropeHalf and ropeInter rotate heads vectors of hd floats by one row of the
	// RoPE table (nil: Go loop). ropeInter needs hd/2 to be a multiple of 8.
	ropeHalf, ropeInter func(x *float32, heads, hd int, cos, sin *float32)
}

// Name identifies the set ("generic", "avx2", "avx512").
func (k *Kernels) Name() string { return k.name }

// HasBF16Dot reports whether the set has the VDPBF16PS matrix product.
func (k *Kernels) HasBF16Dot() bool { return k.gemmBF16 != nil }

// Detect returns the best kernel set for this CPU, honouring CACHECLIP_KERNELS and
// the purego build tag. It reads the environment each time it is called; callers
// keep the result.
func Detect() *Kernels {
	k, _ := Select(os.Getenv(EnvKernels))
	return k
}

// Select returns the kernel set with the given name ("" or "auto" for the best this
// CPU runs). A name the CPU or build cannot run falls back to the best available
// set, with an error saying so.
func Select(name string) (*Kernels, error) {
	sets := Available()
	switch n := strings.ToLower(strings.TrimSpace(name)); n {
	case "", "auto":
		return sets[len(sets)-1], nil
	default:
		for _, k := range sets {
			if k.name == n {
				return k, nil
			}
		}
		return sets[len(sets)-1], fmt.Errorf("kernel set %q is not available on this CPU/build (have %s)", name, names(sets))
	}
}

// Available lists the kernel sets this CPU and build can run, generic first and the
// fastest last. Tests compare every set against the reference.
func Available() []*Kernels {
	out := append([]*Kernels{genericKernels()}, simdKernels()...)
	l1d, l2, l1Ways, l2Ways := cacheSizes()
	for _, k := range out {
		k.l1d, k.l2, k.l1Ways, k.l2Ways = l1d, l2, l1Ways, l2Ways
	}
	return out
}

// caches returns the L1d and L2 sizes the blocking assumes: the detected ones,
// or 32 KiB and 1 MiB (the smallest of the x86 cores with AVX-512 or AVX2 this
// runs on) where the machine does not say.
func (k *Kernels) caches() (l1d, l2 int) {
	l1d, l2 = k.l1d, k.l2
	if l1d <= 0 {
		l1d = 32 << 10
	}
	if l2 <= 0 {
		l2 = 1 << 20
	}
	return l1d, l2
}

// cacheWays returns the L1d and L2 associativity the aliasing rules assume:
// the detected ones, or where the machine does not say, an L1d whose sets
// repeat every aliasPeriod (48 KiB 12-way, 32 KiB 8-way) and a 16-way L2.
func (k *Kernels) cacheWays() (l1Ways, l2Ways int) {
	l1d, _ := k.caches()
	l1Ways, l2Ways = k.l1Ways, k.l2Ways
	if l1Ways <= 0 || k.l1d <= 0 {
		l1Ways = max(1, l1d/aliasPeriod)
	}
	if l2Ways <= 0 || k.l2 <= 0 {
		l2Ways = 16
	}
	return l1Ways, l2Ways
}

// cacheSizes reads the per-core L1 data and L2 cache sizes and their
// associativity from Linux's sysfs (0 where absent: other systems,
// containers that hide it).
func cacheSizes() (l1d, l2, l1Ways, l2Ways int) {
	const dir = "/sys/devices/system/cpu/cpu0/cache/"
	for i := 0; i < 8; i++ {
		idx := dir + "index" + strconv.Itoa(i) + "/"
		level, err1 := os.ReadFile(idx + "level")
		typ, err2 := os.ReadFile(idx + "type")
		size, err3 := os.ReadFile(idx + "size")
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		b := parseCacheSize(strings.TrimSpace(string(size)))
		ways := 0
		if w, err := os.ReadFile(idx + "ways_of_associativity"); err == nil {
			ways = parseCacheSize(strings.TrimSpace(string(w)))
		}
		switch t := strings.TrimSpace(string(typ)); strings.TrimSpace(string(level)) {
		case "1":
			if t == "Data" {
				l1d, l1Ways = b, ways
			}
		case "2":
			if t == "Unified" || t == "Data" {
				l2, l2Ways = b, ways
			}
		}
	}
	return l1d, l2, l1Ways, l2Ways
}

// parseCacheSize reads sysfs's "48K" / "2048K" / "2M" forms (0 when unreadable).
func parseCacheSize(s string) int {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0
	}
	return v * mult
}

func names(ks []*Kernels) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.name
	}
	return strings.Join(s, ", ")
}

// defaultKernels serves the package-level helpers (Dot, RMSNorm, ...) that take no
// Pool. It is set once at start-up and never changed.
var defaultKernels = Detect()
