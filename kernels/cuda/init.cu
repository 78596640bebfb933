#include "common.cuh"

// Deterministic random weights generated on the device, so that benchmark
// models of production shape (15 GB for Qwen2.5-7B) never cross the bus.

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Standard normal from element index and seed (Box–Muller on two hashed uniforms).
__device__ __forceinline__ float normal_at(unsigned long long seed, i64 i) {
    unsigned long long h = splitmix64(seed ^ splitmix64((unsigned long long)i));
    float u1 = ((float)(h >> 40) + 1.f) * (1.f / 16777217.f);
    float u2 = (float)((h >> 16) & 0xffffffull) * (1.f / 16777216.f);
    return sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
}

extern "C" __global__ void fill_normal_bf16(unsigned short* dst, i64 n, unsigned long long seed, float mean, float stddev) {
    i64 i = global_index();
    if (i < n) dst[i] = f32_to_bf16(mean + stddev * normal_at(seed, i));
}

extern "C" __global__ void fill_normal_f32(float* dst, i64 n, unsigned long long seed, float mean, float stddev) {
    i64 i = global_index();
    if (i < n) dst[i] = mean + stddev * normal_at(seed, i);
}
