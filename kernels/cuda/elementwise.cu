#include "common.cuh"

// gate = silu(gate) * up, with expf as kernels.SiLUMul's reference uses exp.
extern "C" __global__ void silu_mul(float* gate, const float* up, i64 n) {
    i64 i = global_index();
    if (i >= n) return;
    float g = gate[i];
    gate[i] = g / (1.f + expf(-g)) * up[i];
}

// dst += x (the residual add).
extern "C" __global__ void add_f32(float* dst, const float* x, i64 n) {
    i64 i = global_index();
    if (i < n) dst[i] += x[i];
}

// x[r] += b for every row (QKV biases).
extern "C" __global__ void add_bias_rows(float* x, const float* b, int rows, int width) {
    i64 i = global_index();
    if (i < (i64)rows * width) x[i] += b[i % width];
}

extern "C" __global__ void f32_to_bf16_k(unsigned short* dst, const float* src, i64 n) {
    i64 i = global_index();
    if (i < n) dst[i] = f32_to_bf16(src[i]);
}

extern "C" __global__ void bf16_to_f32_k(float* dst, const unsigned short* src, i64 n) {
    i64 i = global_index();
    if (i < n) dst[i] = bf16_to_f32(src[i]);
}

extern "C" __global__ void f16_to_f32_k(float* dst, const unsigned short* src, i64 n) {
    i64 i = global_index();
    if (i < n) dst[i] = f16_to_f32(src[i]);
}
