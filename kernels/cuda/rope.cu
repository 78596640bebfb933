#include "common.cuh"

// Rotation tables [n][half] for positions pos: angle pos·invFreq[f] in double,
// rounded to f32 (model.ropeTable does the same on the CPU).
extern "C" __global__ void rope_table(float* cosT, float* sinT, const int* pos, const double* invFreq, int n, int half) {
    i64 i = global_index();
    if (i >= (i64)n * half) return;
    int r = (int)(i / half), f = (int)(i % half);
    double s, c;
    sincos((double)pos[r] * invFreq[f], &s, &c);
    cosT[i] = (float)c;
    sinT[i] = (float)s;
}

__device__ __forceinline__ void rotate_pair(float* v, int f, int half, int interleaved, float c, float s) {
    if (interleaved) {
        float a = v[2 * f], b = v[2 * f + 1];
        v[2 * f] = a * c - b * s;
        v[2 * f + 1] = a * s + b * c;
    } else {
        float a = v[f], b = v[f + half];
        v[f] = a * c - b * s;
        v[f + half] = b * c + a * s;
    }
}

// Rotates the heads vectors of each row of x ([rows][heads][headDim]) by the
// row's table entry. interleaved: pairs (2f, 2f+1) (llama2.c); otherwise
// rotate-half pairs (f, f+headDim/2) (Hugging Face).
extern "C" __global__ void rope_apply(float* x, const float* cosT, const float* sinT, int rows, int heads, int headDim, int interleaved) {
    int half = headDim / 2;
    i64 i = global_index();
    if (i >= (i64)rows * heads * half) return;
    int f = (int)(i % half);
    i64 t = i / half;
    int r = (int)(t / heads);
    float* v = x + t * headDim;
    rotate_pair(v, f, half, interleaved, cosT[(i64)r * half + f], sinT[(i64)r * half + f]);
}

// Moves keys loaded from a shard, rotated at fromPos[i], to toPos[i]: RoPE is a
// rotation, so R(to) = R(to - from)·R(from). k is [slots][kvHeads][headDim].
extern "C" __global__ void rope_rerotate(float* k, const int* fromPos, const int* toPos, const double* invFreq,
                                         int slots, int kvHeads, int headDim, int interleaved) {
    int half = headDim / 2;
    i64 i = global_index();
    if (i >= (i64)slots * kvHeads * half) return;
    int f = (int)(i % half);
    i64 t = i / half;
    int r = (int)(t / kvHeads);
    int delta = toPos[r] - fromPos[r];
    if (delta == 0) return;
    double s, c;
    sincos((double)delta * invFreq[f], &s, &c);
    rotate_pair(k + t * headDim, f, half, interleaved, (float)c, (float)s);
}
