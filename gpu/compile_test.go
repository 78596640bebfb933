package gpu

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestKernelsCompile compiles every kernel source for sm_80 (A100) and sm_90
// (H100/H200) with NVRTC. Where NVRTC cannot be loaded it checks that the error
// names the library and where it was searched, unless CACHECLIP_REQUIRE_NVRTC=1
// (set by CI after installing NVRTC), where a missing NVRTC fails the test.
func TestKernelsCompile(t *testing.T) {
	srcs, err := kernelSources()
	if err != nil {
		t.Fatal(err)
	}
	nv, err := loadNVRTC(searchDirs(os.Getenv))
	if err != nil {
		if os.Getenv("CACHECLIP_REQUIRE_NVRTC") == "1" {
			t.Fatalf("CACHECLIP_REQUIRE_NVRTC=1 but NVRTC cannot be loaded: %v", err)
		}
		var le *LibraryError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "libnvrtc.so") || !strings.Contains(err.Error(), "/usr/local/cuda/lib64") {
			t.Fatalf("missing NVRTC gave an unhelpful error: %v", err)
		}
		t.Logf("NVRTC not installed, kernels not compiled (CI sets CACHECLIP_REQUIRE_NVRTC=1): %v", err)
		return
	}
	major, minor := nv.Version()
	t.Logf("NVRTC %d.%d from %s; supported architectures %v", major, minor, nv.path, nv.SupportedArchs())
	// NVRTC compiles independent programs concurrently; ptxas dominates.
	type job struct {
		src    Source
		target Target
	}
	var jobs []job
	for _, arch := range []int{80, 90} {
		for _, src := range srcs {
			jobs = append(jobs, job{src, Target{Arch: arch, CUBIN: nv.hasCUBIN}})
		}
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(2, runtime.NumCPU()))
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			img, err := nv.Compile(j.src, j.target)
			if err == nil && len(img) < 100 {
				err = fmt.Errorf("%s for %s: image of %d bytes", j.src.Name, j.target, len(img))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s for %s: %v", jobs[i].src.Name, jobs[i].target, err)
		}
	}
}

// TestCompileErrorCarriesLog feeds NVRTC a broken kernel: the error must carry
// the file name and the compiler's log line, which is what a developer needs.
func TestCompileErrorCarriesLog(t *testing.T) {
	nv, err := loadNVRTC(searchDirs(os.Getenv))
	if err != nil {
		if os.Getenv("CACHECLIP_REQUIRE_NVRTC") == "1" {
			t.Fatal(err)
		}
		t.Logf("NVRTC not installed: %v", err)
		return
	}
	_, err = nv.Compile(Source{Name: "broken.cu", Code: "extern \"C\" __global__ void f(float* x) { x[0] = undefined_name; }\n"}, Target{Arch: 80, CUBIN: nv.hasCUBIN})
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("want a CompileError, got %v", err)
	}
	if !strings.Contains(ce.Log, "undefined_name") || !strings.Contains(err.Error(), "broken.cu") {
		t.Fatalf("compile error lacks the log or file: %v", err)
	}
}
