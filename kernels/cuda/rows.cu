#include "common.cuh"

// Embedding gather: out[r] = table[tokens[r]] widened to f32, one kernel per
// table dtype.
extern "C" __global__ void embed_bf16(float* out, const unsigned short* table, const int* tokens, int rows, int hidden) {
    i64 i = global_index();
    if (i >= (i64)rows * hidden) return;
    int r = (int)(i / hidden), c = (int)(i % hidden);
    out[i] = bf16_to_f32(table[(i64)tokens[r] * hidden + c]);
}

extern "C" __global__ void embed_f16(float* out, const unsigned short* table, const int* tokens, int rows, int hidden) {
    i64 i = global_index();
    if (i >= (i64)rows * hidden) return;
    int r = (int)(i / hidden), c = (int)(i % hidden);
    out[i] = f16_to_f32(table[(i64)tokens[r] * hidden + c]);
}

extern "C" __global__ void embed_f32(float* out, const float* table, const int* tokens, int rows, int hidden) {
    i64 i = global_index();
    if (i >= (i64)rows * hidden) return;
    int r = (int)(i / hidden), c = (int)(i % hidden);
    out[i] = table[(i64)tokens[r] * hidden + c];
}

// dst[i] = src[idx[i]] for n rows of width floats (dst must not alias src).
extern "C" __global__ void gather_rows_f32(float* dst, const float* src, const int* idx, int n, int width) {
    i64 i = global_index();
    if (i >= (i64)n * width) return;
    int r = (int)(i / width), c = (int)(i % width);
    dst[i] = src[(i64)idx[r] * width + c];
}

// dst[idx[i]] = src[i]: the selected rows' keys and values into their cache slots.
extern "C" __global__ void scatter_rows_f32(float* dst, const float* src, const int* idx, int n, int width) {
    i64 i = global_index();
    if (i >= (i64)n * width) return;
    int r = (int)(i / width), c = (int)(i % width);
    dst[(i64)idx[r] * width + c] = src[i];
}

// dst[idx[i]] = v: slot positions of the rows written in a forward call.
extern "C" __global__ void scatter_i32(int* dst, const int* v, const int* idx, int n) {
    i64 i = global_index();
    if (i < n) dst[idx[i]] = v[i];
}
