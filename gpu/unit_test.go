package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func TestChooseTarget(t *testing.T) {
	nv118 := []int{35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90}
	tests := []struct {
		cc        int
		supported []int
		cubin     bool
		want      Target
		wantErr   bool
	}{
		{90, nv118, true, Target{90, true}, false},
		{80, nv118, true, Target{80, true}, false},
		{86, nv118, false, Target{86, false}, false},
		{100, nv118, true, Target{90, false}, false}, // Blackwell on NVRTC 11.8: PTX the driver JITs
		{120, []int{75, 80, 100}, true, Target{100, false}, false},
		{30, nv118, true, Target{}, true},
		{90, nil, true, Target{90, true}, false},
	}
	for _, tc := range tests {
		got, err := chooseTarget(tc.cc, tc.supported, tc.cubin)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("chooseTarget(%d, %v, %v) = %v, %v; want %v, error %v", tc.cc, tc.supported, tc.cubin, got, err, tc.want, tc.wantErr)
		}
	}
	if o := compileOptions(Target{90, true})[0]; o != "--gpu-architecture=sm_90" {
		t.Errorf("cubin option %q", o)
	}
	if o := compileOptions(Target{90, false})[0]; o != "--gpu-architecture=compute_90" {
		t.Errorf("ptx option %q", o)
	}
}

func TestCacheKey(t *testing.T) {
	base := Source{Name: "a.cu", Code: "code", Headers: map[string]string{"common.cuh": "h1", "x.cuh": "h2"}}
	k0 := cacheKey(base, Target{90, true}, "nvrtc-12.4")
	same := Source{Name: "a.cu", Code: "code", Headers: map[string]string{"x.cuh": "h2", "common.cuh": "h1"}}
	if cacheKey(same, Target{90, true}, "nvrtc-12.4") != k0 {
		t.Fatal("key depends on header map order")
	}
	variants := map[string]string{
		"source":   cacheKey(Source{Name: "a.cu", Code: "code2", Headers: base.Headers}, Target{90, true}, "nvrtc-12.4"),
		"name":     cacheKey(Source{Name: "b.cu", Code: "code", Headers: base.Headers}, Target{90, true}, "nvrtc-12.4"),
		"header":   cacheKey(Source{Name: "a.cu", Code: "code", Headers: map[string]string{"common.cuh": "h1", "x.cuh": "h3"}}, Target{90, true}, "nvrtc-12.4"),
		"arch":     cacheKey(base, Target{80, true}, "nvrtc-12.4"),
		"ptx":      cacheKey(base, Target{90, false}, "nvrtc-12.4"),
		"compiler": cacheKey(base, Target{90, true}, "nvrtc-11.8"),
		// Moving bytes between source and header must not collide.
		"boundary": cacheKey(Source{Name: "a.cu", Code: "cod", Headers: map[string]string{"common.cuh": "eh1", "x.cuh": "h2"}}, Target{90, true}, "nvrtc-12.4"),
	}
	seen := map[string]string{k0: "base"}
	for what, k := range variants {
		if prev, ok := seen[k]; ok {
			t.Errorf("changing the %s gives the same key as %s", what, prev)
		}
		seen[k] = what
	}
}

func TestModuleCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c := &moduleCache{dir: dir}
	src := Source{Name: "k.cu", Code: "extern \"C\" __global__ void k() {}"}
	calls := 0
	compile := func() ([]byte, error) { calls++; return []byte(fmt.Sprintf("image-%d", calls)), nil }
	img, hit, err := c.get(src, Target{90, true}, "v1", compile)
	if err != nil || hit || string(img) != "image-1" {
		t.Fatalf("first get: %q hit=%v err=%v", img, hit, err)
	}
	img, hit, err = c.get(src, Target{90, true}, "v1", compile)
	if err != nil || !hit || string(img) != "image-1" || calls != 1 {
		t.Fatalf("second get: %q hit=%v err=%v calls=%d", img, hit, err, calls)
	}
	if _, hit, _ = c.get(src, Target{80, true}, "v1", compile); hit || calls != 2 {
		t.Fatalf("another arch must compile again: hit=%v calls=%d", hit, calls)
	}
	if _, hit, _ = c.get(src, Target{90, true}, "v2", compile); hit || calls != 3 {
		t.Fatalf("another compiler must compile again: hit=%v calls=%d", hit, calls)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 3 {
		t.Fatalf("cache holds %v, want 3 images and no temp files", files)
	}
	if !strings.HasSuffix(c.path(cacheKey(src, Target{90, false}, "v1"), Target{90, false}), ".ptx") {
		t.Error("PTX images must be stored as .ptx")
	}
	boom := errors.New("boom")
	if _, _, err := c.get(Source{Name: "bad.cu"}, Target{90, true}, "v1", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("compile error lost: %v", err)
	}
	// An unwritable cache still returns the image.
	ro := &moduleCache{dir: filepath.Join(dir, "k.cu-is-a-file")}
	if err := os.WriteFile(ro.dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if img, _, err := ro.get(src, Target{90, true}, "v1", compile); err != nil || len(img) == 0 {
		t.Fatalf("unwritable cache: %q %v", img, err)
	}
	if d := defaultCacheDir(func(k string) string { return map[string]string{"CACHECLIP_CUDA_CACHE": "/x/y"}[k] }); d != "/x/y" {
		t.Errorf("CACHECLIP_CUDA_CACHE ignored: %s", d)
	}
}

func TestSources(t *testing.T) {
	srcs, err := kernelSources()
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, s := range srcs {
		if _, ok := s.Headers["common.cuh"]; !ok {
			t.Errorf("%s: common.cuh not provided", s.Name)
		}
		if strings.Contains(s.Code, "#include <") {
			t.Errorf("%s includes a system header; NVRTC has no toolkit include dir here", s.Name)
		}
		for _, n := range kernelNames(s.Code) {
			if defined[n] {
				t.Errorf("kernel %s defined twice", n)
			}
			defined[n] = true
		}
	}
	// Every kernel name the Go side launches must exist in the sources.
	var goSrc bytes.Buffer
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		goSrc.Write(b)
	}
	re := regexp.MustCompile(`"((?:attn|rmsnorm|rope|silu|add|f32|bf16|f16|embed|gather|scatter|fill)_[a-z0-9_]*)"`)
	used := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(goSrc.String(), -1) {
		used[m[1]] = true
	}
	if len(used) < 15 {
		t.Fatalf("found only %d kernel names in the Go sources: %v", len(used), used)
	}
	for n := range used {
		if !defined[n] {
			t.Errorf("Go launches %s, which no .cu file defines", n)
		}
	}
	if _, err := sourcesFrom(fstest.MapFS{"README": {Data: []byte("x")}}); err == nil {
		t.Error("an FS without .cu files must be an error")
	}
	if got := kernelNames("extern \"C\" __global__ void __launch_bounds__(128) a(int x) {}\nextern \"C\" __global__ void b(){}"); strings.Join(got, ",") != "a,b" {
		t.Errorf("kernelNames: %v", got)
	}
}

// TestAttentionGeometry ties the Go launch geometry to attention.cu's macros
// and template arguments: a mismatch would read shared memory out of bounds.
func TestAttentionGeometry(t *testing.T) {
	b, err := os.ReadFile("../kernels/cuda/attention.cu")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	macro := func(name string) int {
		m := regexp.MustCompile(`#define ` + name + ` (\d+)`).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("attention.cu lacks %s", name)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	if macro("ATT_WARPS") != attnWarps || macro("ATT_BK") != attnBK {
		t.Fatalf("attention.cu ATT_WARPS=%d ATT_BK=%d, Go has %d, %d", macro("ATT_WARPS"), macro("ATT_BK"), attnWarps, attnBK)
	}
	if maxHD := macro("ATT_MAXDL") * 32; maxHD < 256 {
		t.Fatalf("kernel takes head_dim up to %d", maxHD)
	}
	for _, g := range []*seqGroups{nil, {n: 1}, {n: 3}, {n: 4}} {
		name, qpw, err := attnKernel(g)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(name + `\(ATT_ARGS\) \{ attn_body<(\d+), (\d+)>`).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("%s not found with its template arguments", name)
		}
		ng, _ := strconv.Atoi(m[1])
		q, _ := strconv.Atoi(m[2])
		if q != qpw {
			t.Errorf("%s: Go uses %d queries per warp, kernel %d", name, qpw, q)
		}
		if g != nil && g.n > ng {
			t.Errorf("%s takes %d groups, chosen for %d", name, ng, g.n)
		}
	}
	if _, _, err := attnKernel(&seqGroups{n: 5}); err == nil {
		t.Error("5 groups must be refused")
	}
	// Qwen2.5 head dim 128 with 16 queries per block fits the default 48 KiB.
	if s := attnShared(16, 128); s > 48*1024 {
		t.Errorf("head dim 128 needs %d bytes of shared memory", s)
	}
}

func TestLinearShape(t *testing.T) {
	s, err := linearShape(5, 896, 128)
	if err != nil {
		t.Fatal(err)
	}
	// y^T (out×rows) = W (stored in×out col-major, transposed) · x^T (in×rows).
	want := gemmShape{transA: cublasOpT, transB: cublasOpN, m: 128, n: 5, k: 896, lda: 896, ldb: 896, ldc: 128}
	if s != want {
		t.Fatalf("got %+v want %+v", s, want)
	}
	for _, bad := range [][3]int{{0, 1, 1}, {1, 0, 1}, {1, 1, -1}, {1 << 31, 1, 1}} {
		if _, err := linearShape(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("shape %v accepted", bad)
		}
	}
}

func TestByteLRU(t *testing.T) {
	c := newByteLRU[string](100)
	put := func(k string, n uint64) []string {
		t.Helper()
		ev, err := c.Put(k, k, n)
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		c.Unpin(k)
		return ev
	}
	put("a", 40)
	put("b", 40)
	if c.Used() != 80 || c.Len() != 2 {
		t.Fatalf("used %d len %d", c.Used(), c.Len())
	}
	if _, ok := c.Get("a"); !ok { // a is now most recent and pinned
		t.Fatal("a missing")
	}
	if ev := put("c", 40); strings.Join(ev, ",") != "b" {
		t.Fatalf("evicted %v, want b (least recent)", ev)
	}
	if c.Used() != 80 {
		t.Fatalf("used %d after eviction", c.Used())
	}
	// a is pinned: c must go, not a.
	if ev := put("d", 50); strings.Join(ev, ",") != "c" {
		t.Fatalf("evicted %v, want c (a is pinned)", ev)
	}
	if c.Used() != 90 {
		t.Fatalf("used %d", c.Used())
	}
	// Nothing fits beside pinned a (40): 70 bytes → ErrNoRoom, nothing evicted.
	ev, err := c.Put("e", "e", 70)
	var nr *ErrNoRoom
	if !errors.As(err, &nr) || len(ev) != 0 || c.Used() != 90 {
		t.Fatalf("want ErrNoRoom without eviction, got %v %v used %d", ev, err, c.Used())
	}
	if _, err := c.Put("huge", "huge", 101); !errors.As(err, &nr) {
		t.Fatalf("entry over capacity: %v", err)
	}
	c.Unpin("a")
	if ev := put("e", 70); len(ev) != 2 || c.Used() != 70 {
		t.Fatalf("evicted %v used %d, want a and d gone", ev, c.Used())
	}
	// Replacing a key frees the old bytes.
	if ev := put("e", 30); strings.Join(ev, ",") != "e" || c.Used() != 30 {
		t.Fatalf("replace: evicted %v used %d", ev, c.Used())
	}
	if _, err := c.Get("e"); !err {
		t.Fatal("e missing")
	}
	if _, err := c.Put("e", "e", 10); err == nil {
		t.Fatal("replacing a pinned entry must fail")
	}
	put("f", 20)
	if got := c.DropUnpinned(); strings.Join(got, ",") != "f" || c.Used() != 30 || c.Len() != 1 {
		t.Fatalf("drop unpinned: %v used %d len %d (pinned e must stay)", got, c.Used(), c.Len())
	}
	if got := c.Drain(); len(got) != 1 || c.Used() != 0 || c.Len() != 0 {
		t.Fatalf("drain: %v used %d", got, c.Used())
	}
}

// fakeEngine simulates a device: copies are queued on a "copy stream" and run
// only when the host waits for a later mark, reading the staging buffer as it
// is then. Reusing a staging buffer before its copy ran corrupts the data.
type fakeEngine struct {
	mem      []byte
	staging  [][]byte
	queue    []func()
	bufMark  []int // queue length when buf was last recorded
	log      []string
	widened  map[[2]int]bool
	layerAt  []int // log index of each layer's record
	maxQueue int
}

func (f *fakeEngine) run(upto int) {
	for i := range f.queue[:upto] {
		if f.queue[i] != nil {
			f.queue[i]()
			f.queue[i] = nil
		}
	}
}

func (f *fakeEngine) stage(buf int, src []byte) { copy(f.staging[buf], src) }

func (f *fakeEngine) h2d(dst DevPtr, buf int, n int) error {
	f.queue = append(f.queue, func() { copy(f.mem[dst:int(dst)+n], f.staging[buf][:n]) })
	f.log = append(f.log, fmt.Sprintf("h2d %d", dst))
	f.maxQueue = max(f.maxQueue, len(f.queue))
	return nil
}

func (f *fakeEngine) recordBuf(buf int) error { f.bufMark[buf] = len(f.queue); return nil }
func (f *fakeEngine) waitBuf(buf int) error   { f.run(f.bufMark[buf]); return nil }

func (f *fakeEngine) widen(layer, job int) error {
	f.log = append(f.log, fmt.Sprintf("widen %d %d", layer, job))
	f.widened[[2]int{layer, job}] = true
	return nil
}

func (f *fakeEngine) recordLayer(layer int) error {
	f.layerAt = append(f.layerAt, len(f.log))
	f.log = append(f.log, fmt.Sprintf("layer %d", layer))
	return nil
}

func TestScheduleLoads(t *testing.T) {
	const layers = 3
	chunk := func(seed byte, lb int) func(l int) (k, v []byte) {
		return func(l int) (k, v []byte) {
			k, v = make([]byte, lb), make([]byte, lb)
			for i := range k {
				k[i] = seed + byte(l*7) + byte(i)
				v[i] = seed + byte(l*13) + byte(i*3)
			}
			return
		}
	}
	jobs := []loadJob{
		{entry: 0, layerBytes: 1000, src: chunk(1, 1000)},
		{entry: 6000, layerBytes: 300, src: chunk(50, 300), hit: true},
		{entry: 8000, layerBytes: 2500, src: chunk(100, 2500)},
	}
	for _, nbuf := range []int{2, 3} {
		for _, size := range []int{256, 1024, 4096} {
			t.Run(fmt.Sprintf("%dx%d", nbuf, size), func(t *testing.T) {
				f := &fakeEngine{mem: make([]byte, 30000), bufMark: make([]int, nbuf), widened: map[[2]int]bool{}}
				for range nbuf {
					f.staging = append(f.staging, make([]byte, size))
				}
				copied, err := scheduleLoads(context.Background(), f, newStager(f, nbuf, size), layers, jobs)
				if err != nil {
					t.Fatal(err)
				}
				f.run(len(f.queue))
				if copied != 2*layers*(1000+2500) {
					t.Errorf("copied %d bytes", copied)
				}
				for ji, j := range jobs {
					for l := 0; l < layers; l++ {
						k, v := j.src(l)
						base := int(j.entry) + 2*l*j.layerBytes
						gotK, gotV := f.mem[base:base+j.layerBytes], f.mem[base+j.layerBytes:base+2*j.layerBytes]
						if j.hit {
							if bytes.ContainsFunc(gotK, func(r rune) bool { return r != 0 }) {
								t.Errorf("job %d is a hit but was copied", ji)
							}
						} else if !bytes.Equal(gotK, k) || !bytes.Equal(gotV, v) {
							t.Errorf("job %d layer %d: device bytes differ from the source (staging reused too early?)", ji, l)
						}
						if !f.widened[[2]int{l, ji}] {
							t.Errorf("job %d layer %d never widened into the cache", ji, l)
						}
					}
				}
				// Layer l's event comes after all of layer l's work and before any of layer l+1's.
				for l, at := range f.layerAt {
					for i, e := range f.log {
						var el, ej int
						if n, _ := fmt.Sscanf(e, "widen %d %d", &el, &ej); n == 2 {
							if (el <= l) != (i < at) {
								t.Fatalf("widen of layer %d at %d vs layer %d event at %d", el, i, l, at)
							}
						}
					}
				}
				if f.maxQueue < 2 {
					t.Errorf("copies never overlapped (max %d in flight)", f.maxQueue)
				}
			})
		}
	}
	bad := []loadJob{{entry: 0, layerBytes: 10, src: func(int) ([]byte, []byte) { return make([]byte, 10), make([]byte, 9) }}}
	f := &fakeEngine{mem: make([]byte, 100), bufMark: make([]int, 2), staging: [][]byte{make([]byte, 64), make([]byte, 64)}, widened: map[[2]int]bool{}}
	if _, err := scheduleLoads(context.Background(), f, newStager(f, 2, 64), 1, bad); err == nil || !strings.Contains(err.Error(), "layer 0") {
		t.Errorf("short value bytes: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := scheduleLoads(ctx, f, newStager(f, 2, 64), 1, jobs[:1]); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled load: %v", err)
	}
}
