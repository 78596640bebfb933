// Helpers shared by every kernel file. Only builtin types and functions are
// used, so NVRTC compiles these sources without a CUDA toolkit's include
// directory; the Go side hands this file to NVRTC as an in-memory header.
#pragma once

#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)
// Initial running maximum of an online softmax: finite, so that
// exp(m_old - m_new) is 0 rather than NaN before anything was seen.
#define NEG_BIG (-1e30f)

typedef long long i64;

__device__ __forceinline__ float bf16_to_f32(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// Round to nearest even; NaN stays NaN (same bits as kernels.F32ToBF16).
__device__ __forceinline__ unsigned short f32_to_bf16(float f) {
    unsigned int b = __float_as_uint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((b >> 16) | 0x40u);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (unsigned short)(b >> 16);
}

// IEEE half to float, subnormals included (same values as kernels.F16ToF32).
__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    unsigned int sign = ((unsigned int)(h >> 15)) << 31;
    unsigned int ex = (h >> 10) & 0x1fu;
    unsigned int man = h & 0x3ffu;
    if (ex == 0) {
        if (man == 0) return __uint_as_float(sign);
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (ex == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    return __uint_as_float(sign | ((ex + 112u) << 23) | (man << 13));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over the block; every thread gets the result. blockDim.x must be a
// multiple of 32 and at most 1024.
__device__ __forceinline__ float block_sum(float v, float* scratch /* [32] shared */) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < nw) ? scratch[threadIdx.x] : 0.f;
    if (w == 0) v = warp_sum(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    float r = scratch[0];
    __syncthreads();
    return r;
}

__device__ __forceinline__ i64 global_index() {
    return (i64)blockIdx.x * blockDim.x + threadIdx.x;
}
