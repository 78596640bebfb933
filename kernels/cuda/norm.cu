#include "common.cuh"

// out[r] = x[r] / rms(x[r]) * w, one block per row (out may alias x). The sum
// of squares is f32 and the inverse root is taken in double, as kernels.RMSNorm does.
extern "C" __global__ void rmsnorm_f32(float* out, const float* x, const float* w, int rows, int n, float eps) {
    __shared__ float scratch[32];
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (i64)r * n;
    float* o = out + (i64)r * n;
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    float inv = (float)(1.0 / sqrt((double)ss / (double)n + (double)eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * inv * w[i];
}
