package gpu

import (
	"fmt"
	"os"
	"unsafe"
)

// DevPtr is a CUdeviceptr.
type DevPtr uint64

type (
	cuResult  int32
	cuContext uintptr
	cuStream  uintptr
	cuEvent   uintptr
	cuModule  uintptr
	cuFunc    uintptr
)

const (
	cuDevAttrCCMajor        = 75
	cuDevAttrCCMinor        = 76
	cuDevAttrSMCount        = 16
	cuDevAttrClockKHz       = 13
	cuFuncAttrMaxDynShared  = 8
	cuMemHostAllocPortable  = 1
	cuStreamNonBlocking     = 1
	cuEventDisableTiming    = 2
	cuErrorNotReady         = 600
	cuErrorNoDevice         = 100
	cuErrorInsufficientDrv  = 35
	cuErrorNotInitialized   = 3
	cuErrorInvalidDevice    = 101
	cuErrorInvalidImage     = 200
	cuErrorNoBinaryForGPU   = 209
	cuErrorUnsupportedPTX   = 222
	cuErrorOutOfMemory      = 2
	cuErrorInvalidValue     = 1
	cuErrorLaunchOutOfResrc = 701
)

// driver is the subset of the CUDA driver API the backend uses.
type driver struct {
	handle uintptr
	path   string

	cuInit                    func(flags uint32) cuResult
	cuDriverGetVersion        func(v *int32) cuResult
	cuDeviceGetCount          func(n *int32) cuResult
	cuDeviceGet               func(dev *int32, ordinal int32) cuResult
	cuDeviceGetName           func(name *byte, n int32, dev int32) cuResult
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) cuResult
	cuDeviceTotalMem          func(bytes *uint64, dev int32) cuResult
	cuDevicePrimaryCtxRetain  func(ctx *cuContext, dev int32) cuResult
	cuDevicePrimaryCtxRelease func(dev int32) cuResult
	cuCtxSetCurrent           func(ctx cuContext) cuResult
	cuCtxSynchronize          func() cuResult
	cuMemGetInfo              func(free, total *uint64) cuResult
	cuMemAlloc                func(p *DevPtr, size uint64) cuResult
	cuMemFree                 func(p DevPtr) cuResult
	cuMemHostAlloc            func(p *unsafe.Pointer, size uint64, flags uint32) cuResult
	cuMemFreeHost             func(p unsafe.Pointer) cuResult
	cuMemHostRegister         func(p unsafe.Pointer, size uint64, flags uint32) cuResult
	cuMemHostUnregister       func(p unsafe.Pointer) cuResult
	cuMemcpyHtoD              func(dst DevPtr, src unsafe.Pointer, n uint64) cuResult
	cuMemcpyDtoH              func(dst unsafe.Pointer, src DevPtr, n uint64) cuResult
	cuMemcpyHtoDAsync         func(dst DevPtr, src unsafe.Pointer, n uint64, s cuStream) cuResult
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src DevPtr, n uint64, s cuStream) cuResult
	cuMemcpyDtoDAsync         func(dst, src DevPtr, n uint64, s cuStream) cuResult
	cuMemsetD32Async          func(dst DevPtr, v uint32, n uint64, s cuStream) cuResult
	cuStreamCreate            func(s *cuStream, flags uint32) cuResult
	cuStreamDestroy           func(s cuStream) cuResult
	cuStreamSynchronize       func(s cuStream) cuResult
	cuStreamWaitEvent         func(s cuStream, e cuEvent, flags uint32) cuResult
	cuEventCreate             func(e *cuEvent, flags uint32) cuResult
	cuEventDestroy            func(e cuEvent) cuResult
	cuEventRecord             func(e cuEvent, s cuStream) cuResult
	cuEventSynchronize        func(e cuEvent) cuResult
	cuEventQuery              func(e cuEvent) cuResult
	cuEventElapsedTime        func(ms *float32, a, b cuEvent) cuResult
	cuModuleLoadData          func(m *cuModule, image unsafe.Pointer) cuResult
	cuModuleUnload            func(m cuModule) cuResult
	cuModuleGetFunction       func(f *cuFunc, m cuModule, name string) cuResult
	cuFuncSetAttribute        func(f cuFunc, attr int32, v int32) cuResult
	cuLaunchKernel            func(f cuFunc, gx, gy, gz, bx, by, bz, shmem uint32, s cuStream, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	cuGetErrorName            func(r cuResult, s *unsafe.Pointer) cuResult
	cuGetErrorString          func(r cuResult, s *unsafe.Pointer) cuResult
}

func loadDriver() (*driver, error) {
	h, path, err := findLibrary(libCUDA, searchDirs(os.Getenv), dlopen)
	if err != nil {
		return nil, err
	}
	d := &driver{handle: h, path: path}
	s := &symbols{lib: path, handle: h}
	s.bind(&d.cuInit, "cuInit")
	s.bind(&d.cuDriverGetVersion, "cuDriverGetVersion")
	s.bind(&d.cuDeviceGetCount, "cuDeviceGetCount")
	s.bind(&d.cuDeviceGet, "cuDeviceGet")
	s.bind(&d.cuDeviceGetName, "cuDeviceGetName")
	s.bind(&d.cuDeviceGetAttribute, "cuDeviceGetAttribute")
	s.bind(&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2")
	s.bind(&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
	s.bind(&d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")
	s.bind(&d.cuCtxSetCurrent, "cuCtxSetCurrent")
	s.bind(&d.cuCtxSynchronize, "cuCtxSynchronize")
	s.bind(&d.cuMemGetInfo, "cuMemGetInfo_v2")
	s.bind(&d.cuMemAlloc, "cuMemAlloc_v2")
	s.bind(&d.cuMemFree, "cuMemFree_v2")
	s.bind(&d.cuMemHostAlloc, "cuMemHostAlloc")
	s.bind(&d.cuMemFreeHost, "cuMemFreeHost")
	s.bind(&d.cuMemHostRegister, "cuMemHostRegister_v2", "cuMemHostRegister")
	s.bind(&d.cuMemHostUnregister, "cuMemHostUnregister")
	s.bind(&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2")
	s.bind(&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2")
	s.bind(&d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2")
	s.bind(&d.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")
	s.bind(&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2")
	s.bind(&d.cuMemsetD32Async, "cuMemsetD32Async")
	s.bind(&d.cuStreamCreate, "cuStreamCreate")
	s.bind(&d.cuStreamDestroy, "cuStreamDestroy_v2")
	s.bind(&d.cuStreamSynchronize, "cuStreamSynchronize")
	s.bind(&d.cuStreamWaitEvent, "cuStreamWaitEvent")
	s.bind(&d.cuEventCreate, "cuEventCreate")
	s.bind(&d.cuEventDestroy, "cuEventDestroy_v2")
	s.bind(&d.cuEventRecord, "cuEventRecord")
	s.bind(&d.cuEventSynchronize, "cuEventSynchronize")
	s.bind(&d.cuEventQuery, "cuEventQuery")
	s.bind(&d.cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime")
	s.bind(&d.cuModuleLoadData, "cuModuleLoadData")
	s.bind(&d.cuModuleUnload, "cuModuleUnload")
	s.bind(&d.cuModuleGetFunction, "cuModuleGetFunction")
	s.bind(&d.cuFuncSetAttribute, "cuFuncSetAttribute")
	s.bind(&d.cuLaunchKernel, "cuLaunchKernel")
	s.bind(&d.cuGetErrorName, "cuGetErrorName")
	s.bind(&d.cuGetErrorString, "cuGetErrorString")
	if s.err != nil {
		return nil, s.err
	}
	return d, nil
}

// cString reads a NUL-terminated string the library owns.
func cString(p unsafe.Pointer) string {
	if p == nil {
		return ""
	}
	var n int
	for *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(p), n))
}

// CUDAError is a failed driver call.
type CUDAError struct {
	Call string
	Code int32
	Name string
	Msg  string
}

func (e *CUDAError) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d): %s", e.Call, e.Name, e.Code, e.Msg)
}

// check turns a driver result into an error naming the call.
func (d *driver) check(call string, r cuResult) error {
	if r == 0 {
		return nil
	}
	e := &CUDAError{Call: call, Code: int32(r)}
	var p unsafe.Pointer
	if d.cuGetErrorName(r, &p) == 0 {
		e.Name = cString(p)
	}
	if d.cuGetErrorString(r, &p) == 0 {
		e.Msg = cString(p)
	}
	return e
}
