package gpu

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"unsafe"
)

// Buffer is a device allocation.
type Buffer struct {
	Ptr   DevPtr
	Bytes uint64
}

// Alloc allocates n bytes of device memory.
func (d *Device) Alloc(n uint64) (Buffer, error) {
	unlock := d.bind()
	defer unlock()
	return d.alloc(n)
}

func (d *Device) alloc(n uint64) (Buffer, error) {
	if n == 0 {
		n = 4
	}
	var p DevPtr
	if err := d.drv.check(fmt.Sprintf("cuMemAlloc(%d bytes)", n), d.drv.cuMemAlloc(&p, n)); err != nil {
		return Buffer{}, err
	}
	return Buffer{Ptr: p, Bytes: n}, nil
}

// Free releases a device allocation; freeing the zero Buffer is a no-op.
func (d *Device) Free(b Buffer) {
	if b.Ptr == 0 {
		return
	}
	unlock := d.bind()
	defer unlock()
	d.drv.cuMemFree(b.Ptr)
}

func (d *Device) free(b Buffer) {
	if b.Ptr != 0 {
		d.drv.cuMemFree(b.Ptr)
	}
}

// bytesOf views a slice's backing array as bytes.
func bytesOf[T any](s []T) (unsafe.Pointer, uint64) {
	if len(s) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&s[0]), uint64(len(s)) * uint64(unsafe.Sizeof(s[0]))
}

// upload copies a host slice to dst and waits for it. The copy goes through the
// compute stream, not the legacy default stream: the streams are non-blocking,
// and a synchronous copy from pageable memory may return before its DMA lands,
// so only stream order guarantees that later kernels see the data.
func upload[T any](d *Device, dst DevPtr, src []T) error {
	p, n := bytesOf(src)
	if n == 0 {
		return nil
	}
	if err := d.drv.check("cuMemcpyHtoDAsync", d.drv.cuMemcpyHtoDAsync(dst, p, n, d.compute)); err != nil {
		return err
	}
	err := d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.compute))
	runtime.KeepAlive(src)
	return err
}

// uploadAsync copies src on the compute stream; src must stay unchanged until the
// stream reaches the copy, which callers ensure by synchronising before reuse.
func uploadAsync[T any](d *Device, dst DevPtr, src []T) error {
	p, n := bytesOf(src)
	if n == 0 {
		return nil
	}
	return d.drv.check("cuMemcpyHtoDAsync", d.drv.cuMemcpyHtoDAsync(dst, p, n, d.compute))
}

// download copies device memory into a host slice after the compute stream's
// earlier work (the copy is ordered on that stream, then waited for).
func download[T any](d *Device, dst []T, src DevPtr) error {
	p, n := bytesOf(dst)
	if n == 0 {
		return nil
	}
	if err := d.drv.check("cuMemcpyDtoHAsync", d.drv.cuMemcpyDtoHAsync(p, src, n, d.compute)); err != nil {
		return err
	}
	err := d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.compute))
	runtime.KeepAlive(dst)
	return err
}

// allocUpload allocates a buffer holding src.
func allocUpload[T any](d *Device, src []T) (Buffer, error) {
	_, n := bytesOf(src)
	b, err := d.alloc(n)
	if err != nil {
		return Buffer{}, err
	}
	if err := upload(d, b.Ptr, src); err != nil {
		d.free(b)
		return Buffer{}, err
	}
	return b, nil
}

// Pinned is page-locked host memory the DMA engines read directly, which makes
// asynchronous host-to-device copies truly asynchronous and full speed.
type Pinned struct {
	ptr  unsafe.Pointer
	Data []byte
	reg  bool // registered Go memory rather than cuMemHostAlloc'd
}

// AllocPinned allocates n bytes of pinned host memory.
func (d *Device) AllocPinned(n int) (*Pinned, error) {
	unlock := d.bind()
	defer unlock()
	var p unsafe.Pointer
	if err := d.drv.check(fmt.Sprintf("cuMemHostAlloc(%d bytes)", n), d.drv.cuMemHostAlloc(&p, uint64(n), cuMemHostAllocPortable)); err != nil {
		return nil, err
	}
	return &Pinned{ptr: p, Data: unsafe.Slice((*byte)(p), n)}, nil
}

// FreePinned releases pinned memory from AllocPinned.
func (d *Device) FreePinned(p *Pinned) {
	if p == nil || p.ptr == nil {
		return
	}
	unlock := d.bind()
	defer unlock()
	if p.reg {
		d.drv.cuMemHostUnregister(p.ptr)
	} else {
		d.drv.cuMemFreeHost(p.ptr)
	}
	p.ptr, p.Data = nil, nil
}

// RegisterHost page-locks existing host memory (for example a memory-mapped shard
// file) so that copies from it need no staging; unregister with FreePinned.
func (d *Device) RegisterHost(b []byte) (*Pinned, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("register host memory: empty buffer")
	}
	unlock := d.bind()
	defer unlock()
	p := unsafe.Pointer(&b[0])
	if err := d.drv.check("cuMemHostRegister", d.drv.cuMemHostRegister(p, uint64(len(b)), cuMemHostAllocPortable)); err != nil {
		return nil, err
	}
	return &Pinned{ptr: p, Data: b, reg: true}, nil
}

// kernelSet holds the loaded modules and their functions by name.
type kernelSet struct {
	modules []cuModule
	fn      map[string]cuFunc
	target  Target
	cached  int // modules that came from the disk cache
}

// loadKernels compiles (or takes from the disk cache) every kernel source for the
// device and loads it. Called with the context bound.
func loadKernels(ctx context.Context, d *Device) (*kernelSet, error) {
	srcs, err := kernelSources()
	if err != nil {
		return nil, err
	}
	nv, err := loadNVRTC(searchDirs(os.Getenv))
	if err != nil {
		return nil, err
	}
	target, err := chooseTarget(d.CC, nv.SupportedArchs(), nv.hasCUBIN)
	if err != nil {
		return nil, err
	}
	major, minor := nv.Version()
	cache := &moduleCache{dir: defaultCacheDir(os.Getenv)}
	ks := &kernelSet{fn: map[string]cuFunc{}, target: target}
	for _, src := range srcs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		img, hit, err := cache.get(src, target, fmt.Sprintf("nvrtc-%d.%d", major, minor), func() ([]byte, error) { return nv.Compile(src, target) })
		if err != nil {
			return nil, err
		}
		if hit {
			ks.cached++
		}
		if !target.CUBIN {
			img = append(img, 0) // PTX is loaded as a C string
		}
		var mod cuModule
		if err := d.drv.check("cuModuleLoadData "+src.Name+" ("+target.String()+")", d.drv.cuModuleLoadData(&mod, unsafe.Pointer(&img[0]))); err != nil {
			return nil, err
		}
		ks.modules = append(ks.modules, mod)
		for _, name := range kernelNames(src.Code) {
			var f cuFunc
			if err := d.drv.check("cuModuleGetFunction "+name, d.drv.cuModuleGetFunction(&f, mod, name)); err != nil {
				return nil, err
			}
			ks.fn[name] = f
		}
	}
	return ks, nil
}

// launch runs kernel name on the compute stream. Arguments are DevPtr, Buffer,
// int (passed as C int), int64, uint64 or float32, in the kernel's order.
func (d *Device) launch(name string, grid, block [3]uint32, shmem uint32, args ...any) error {
	return d.launchOn(d.compute, name, grid, block, shmem, args...)
}

func (d *Device) launchOn(s cuStream, name string, grid, block [3]uint32, shmem uint32, args ...any) error {
	f, ok := d.kern.fn[name]
	if !ok {
		return fmt.Errorf("cuda: kernel %s not loaded", name)
	}
	slots := make([]uint64, len(args))
	params := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		p := unsafe.Pointer(&slots[i])
		switch v := a.(type) {
		case DevPtr:
			*(*uint64)(p) = uint64(v)
		case Buffer:
			*(*uint64)(p) = uint64(v.Ptr)
		case int:
			*(*int32)(p) = int32(v)
		case int32:
			*(*int32)(p) = v
		case int64:
			*(*int64)(p) = v
		case uint64:
			*(*uint64)(p) = v
		case float32:
			*(*float32)(p) = v
		default:
			return fmt.Errorf("cuda: kernel %s: argument %d has unsupported type %T", name, i, a)
		}
		params[i] = p
	}
	var pp unsafe.Pointer
	if len(params) > 0 {
		pp = unsafe.Pointer(&params[0])
	}
	r := d.drv.cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], shmem, s, pp, nil)
	runtime.KeepAlive(slots)
	runtime.KeepAlive(params)
	return d.drv.check("cuLaunchKernel "+name, r)
}

// grid1 is the launch shape of a flat kernel over n elements.
func grid1(n int64) ([3]uint32, [3]uint32) {
	const threads = 256
	b := (n + threads - 1) / threads
	if b < 1 {
		b = 1
	}
	return [3]uint32{uint32(b), 1, 1}, [3]uint32{threads, 1, 1}
}

// flat launches an elementwise kernel over n elements.
func (d *Device) flat(name string, n int64, args ...any) error {
	g, b := grid1(n)
	return d.launch(name, g, b, 0, args...)
}

// ptrOf is the address of a slice's first element (nil when empty).
func ptrOf[T any](s []T) unsafe.Pointer {
	p, _ := bytesOf(s)
	return p
}
