package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Kind is the backend a run uses.
type Kind int

const (
	KindAuto Kind = iota
	KindCPU
	KindCUDA
)

// DeviceSpec is a parsed --device value.
type DeviceSpec struct {
	Kind    Kind
	Ordinal int // CUDA device number; -1 with KindAuto or a bare "cuda" means 0
}

func (s DeviceSpec) String() string {
	switch s.Kind {
	case KindCPU:
		return "cpu"
	case KindCUDA:
		return fmt.Sprintf("cuda:%d", s.Ordinal)
	}
	return "auto"
}

// ParseDevice reads "auto", "cpu", "cuda" or "cuda:N".
func ParseDevice(s string) (DeviceSpec, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "", "auto":
		return DeviceSpec{Kind: KindAuto}, nil
	case "cpu":
		return DeviceSpec{Kind: KindCPU}, nil
	case "cuda", "gpu":
		return DeviceSpec{Kind: KindCUDA}, nil
	}
	if rest, ok := strings.CutPrefix(v, "cuda:"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return DeviceSpec{}, fmt.Errorf("device %q: want cuda:N with N a device number >= 0", s)
		}
		return DeviceSpec{Kind: KindCUDA, Ordinal: n}, nil
	}
	return DeviceSpec{}, fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", s)
}

// ErrNoDevice means the driver loaded but reported no usable CUDA device.
var ErrNoDevice = errors.New("no CUDA device")

// opener opens a CUDA device; Select takes it as a parameter so that its
// fallback logic is tested without a GPU.
type opener func(ctx context.Context, ordinal int) (*Device, error)

// Select resolves a spec to a device: nil means the CPU backend. auto uses CUDA
// device 0 when the driver, cuBLAS, NVRTC and a device are all present and falls
// back to the CPU with an info line saying why; an explicit cuda request fails
// with an error naming what is missing.
func Select(ctx context.Context, spec DeviceSpec, log *slog.Logger) (*Device, error) {
	return selectWith(ctx, spec, log, Open)
}

func selectWith(ctx context.Context, spec DeviceSpec, log *slog.Logger, open opener) (*Device, error) {
	if log == nil {
		log = slog.Default()
	}
	switch spec.Kind {
	case KindCPU:
		return nil, nil
	case KindCUDA:
		d, err := open(ctx, spec.Ordinal)
		if err != nil {
			return nil, fmt.Errorf("device %s requested: %w", spec, err)
		}
		return d, nil
	}
	d, err := open(ctx, 0)
	if err != nil {
		log.Info("device auto: using the CPU backend", "reason", err.Error())
		return nil, nil
	}
	log.Info("device auto: using CUDA", "device", d.Name, "compute_capability", d.CC, "memory_gib", float64(d.TotalMem)/(1<<30))
	return d, nil
}

// Device is an opened CUDA device with its primary context, a compute and a
// copy stream, a cuBLAS handle and the compiled kernels.
type Device struct {
	Ordinal  int
	Name     string
	CC       int // compute capability, 90 for 9.0
	SMs      int
	TotalMem uint64

	drv     *driver
	blas    *cublas
	handle  cublasHandle
	ctx     cuContext
	compute cuStream
	copy    cuStream
	kern    *kernelSet

	closeOnce sync.Once
}

// Open initialises the driver, retains device ordinal's primary context, creates
// streams and a cuBLAS handle and loads (compiling on a cache miss) the kernels.
func Open(ctx context.Context, ordinal int) (*Device, error) {
	drv, err := loadDriver()
	if err != nil {
		return nil, err
	}
	if r := drv.cuInit(0); r != 0 {
		return nil, fmt.Errorf("driver %s: %w", drv.path, drv.check("cuInit", r))
	}
	var count int32
	if err := drv.check("cuDeviceGetCount", drv.cuDeviceGetCount(&count)); err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, fmt.Errorf("%w: the driver (%s) reports none", ErrNoDevice, drv.path)
	}
	if ordinal >= int(count) {
		return nil, fmt.Errorf("%w: device %d asked for, the driver reports %d (0..%d)", ErrNoDevice, ordinal, count, count-1)
	}
	var dev int32
	if err := drv.check("cuDeviceGet", drv.cuDeviceGet(&dev, int32(ordinal))); err != nil {
		return nil, err
	}
	d := &Device{Ordinal: ordinal, drv: drv}
	name := make([]byte, 256)
	if err := drv.check("cuDeviceGetName", drv.cuDeviceGetName(&name[0], int32(len(name)), dev)); err != nil {
		return nil, err
	}
	d.Name = cString(unsafe.Pointer(&name[0]))
	var major, minor, sms int32
	drv.cuDeviceGetAttribute(&major, cuDevAttrCCMajor, dev)
	drv.cuDeviceGetAttribute(&minor, cuDevAttrCCMinor, dev)
	drv.cuDeviceGetAttribute(&sms, cuDevAttrSMCount, dev)
	d.CC, d.SMs = int(major*10+minor), int(sms)
	if err := drv.check("cuDeviceTotalMem", drv.cuDeviceTotalMem(&d.TotalMem, dev)); err != nil {
		return nil, err
	}
	if err := drv.check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&d.ctx, dev)); err != nil {
		return nil, err
	}
	unlock := d.bind()
	defer unlock()
	fail := func(err error) (*Device, error) {
		d.closeLocked()
		return nil, err
	}
	if err := drv.check("cuStreamCreate", drv.cuStreamCreate(&d.compute, cuStreamNonBlocking)); err != nil {
		return fail(err)
	}
	if err := drv.check("cuStreamCreate", drv.cuStreamCreate(&d.copy, cuStreamNonBlocking)); err != nil {
		return fail(err)
	}
	if d.blas, err = loadCUBLAS(); err != nil {
		return fail(err)
	}
	if err := cublasErr("cublasCreate", d.blas.cublasCreate(&d.handle)); err != nil {
		return fail(err)
	}
	if err := cublasErr("cublasSetStream", d.blas.cublasSetStream(d.handle, d.compute)); err != nil {
		return fail(err)
	}
	if err := cublasErr("cublasSetMathMode", d.blas.cublasSetMathMode(d.handle, cublasDefaultMath)); err != nil {
		return fail(err)
	}
	if d.kern, err = loadKernels(ctx, d); err != nil {
		return fail(err)
	}
	return d, nil
}

// bind makes the device's context current on this goroutine's OS thread: the
// driver keeps the current context per thread and goroutines move between
// threads. Every public entry point binds for its duration.
func (d *Device) bind() func() {
	runtime.LockOSThread()
	d.drv.cuCtxSetCurrent(d.ctx)
	return runtime.UnlockOSThread
}

// Close releases the streams, the cuBLAS handle, the modules and the context.
func (d *Device) Close() error {
	unlock := d.bind()
	defer unlock()
	d.closeLocked()
	return nil
}

func (d *Device) closeLocked() {
	d.closeOnce.Do(func() {
		if d.kern != nil {
			for _, m := range d.kern.modules {
				d.drv.cuModuleUnload(m)
			}
		}
		if d.handle != 0 {
			d.blas.cublasDestroy(d.handle)
		}
		if d.copy != 0 {
			d.drv.cuStreamDestroy(d.copy)
		}
		if d.compute != 0 {
			d.drv.cuStreamDestroy(d.compute)
		}
		d.drv.cuDevicePrimaryCtxRelease(int32(d.Ordinal))
	})
}

// MemInfo returns free and total device memory.
func (d *Device) MemInfo() (free, total uint64, err error) {
	unlock := d.bind()
	defer unlock()
	err = d.drv.check("cuMemGetInfo", d.drv.cuMemGetInfo(&free, &total))
	return
}

// Sync waits for all work on the device's streams.
func (d *Device) Sync() error {
	unlock := d.bind()
	defer unlock()
	return d.drv.check("cuCtxSynchronize", d.drv.cuCtxSynchronize())
}

// String describes the device for logs.
func (d *Device) String() string {
	return fmt.Sprintf("cuda:%d %s (sm_%d, %d SMs, %.1f GiB)", d.Ordinal, d.Name, d.CC, d.SMs, float64(d.TotalMem)/(1<<30))
}
