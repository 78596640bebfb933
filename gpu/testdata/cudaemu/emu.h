// CPU emulation of the CUDA subset the kernels use: blocks run one after
// another, threads of a block as std::threads with barriers for __syncthreads
// and per-warp barriers for shuffles.
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>
#include <algorithm>
#include <memory>
using std::min; using std::max;
struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
static std::barrier<>* g_block;
static std::vector<std::unique_ptr<std::barrier<>>> g_warp;
static float g_xch[32][32];
static int g_flags[1024];
thread_local int t_warp, t_lane;
static float g_dynsmem[1 << 18];
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(x)
#define __shared__ static
inline void __syncthreads() { g_block->arrive_and_wait(); }
inline int __syncthreads_or(int p) {
    g_flags[threadIdx.x] = p; g_block->arrive_and_wait();
    int r = 0; for (unsigned i = 0; i < blockDim.x; i++) r |= g_flags[i];
    g_block->arrive_and_wait(); return r != 0;
}
inline float __shfl_xor_sync(unsigned, float v, int o) {
    g_xch[t_warp][t_lane] = v; g_warp[t_warp]->arrive_and_wait();
    float r = g_xch[t_warp][t_lane ^ o]; g_warp[t_warp]->arrive_and_wait(); return r;
}
inline float __shfl_sync(unsigned, float v, int src) {
    g_xch[t_warp][t_lane] = v; g_warp[t_warp]->arrive_and_wait();
    float r = g_xch[t_warp][src]; g_warp[t_warp]->arrive_and_wait(); return r;
}
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
inline float cospif(float x) { return (float)cos(M_PI * (double)x); }

template <typename F, typename... A>
void launch(dim3 grid, dim3 block, F f, A... args) {
    gridDim = grid; blockDim = block;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            std::barrier<> b(block.x);
            g_block = &b;
            g_warp.clear();
            for (unsigned w = 0; w < (block.x + 31) / 32; w++) g_warp.push_back(std::make_unique<std::barrier<>>(32));
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < block.x; t++)
                ts.emplace_back([=] {
                    threadIdx = dim3{t, 0, 0}; blockIdx = dim3{bx, by, 0};
                    t_warp = t / 32; t_lane = t % 32;
                    f(args...);
                });
            for (auto& t : ts) t.join();
        }
}
