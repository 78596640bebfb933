#include "common.cuh"

// Fused attention of rows over cache slots, the semantics of the CPU reference
// (kernels.Attention): slot j is visible to a row at
// position p iff 0 <= slotPos[j] <= p; query head h reads KV head
// h / (heads/kvHeads); with slot groups (APE) each group has its own softmax
// with logits scaled by 1/temp[g], and the groups' results are merged with
// weights exp(lseScale[g]·lse_g) normalised. Rows that see no slot get zeros.
//
// Work split: a block owns QB query vectors (row, head) of one KV head
// (blockIdx.y), so every K/V tile it stages in shared memory serves all of
// them, grouped-query heads included. The slots are walked in tiles of 32; a
// tile no query of the block can see (the causal upper triangle) is skipped
// before its K/V are read. Within a warp, lane j scores slot j of the tile
// against the warp's queries, the softmax statistics are warp reductions, and
// for P·V lane l accumulates dimensions l, l+32, ... so V reads are coalesced.
// Statistics and accumulation are f32 (the reference uses f64).

#define ATT_BK 32
#define ATT_WARPS 4
#define ATT_MAXDL 8 // head_dim <= 256

template <int NG, int QPW>
__device__ __forceinline__ void attn_body(
    float* __restrict__ out, float* __restrict__ stats,
    const float* __restrict__ q, const int* __restrict__ rowPos, int rows,
    const float* __restrict__ k, const float* __restrict__ v, const int* __restrict__ slotPos, int nSlots,
    const unsigned char* __restrict__ slotGroup, const float* __restrict__ groupTemp,
    const float* __restrict__ groupLSEScale, int nGroups,
    int heads, int kvHeads, int headDim, float scale) {
    const int QB = ATT_WARPS * QPW;
    extern __shared__ float smem[];
    __shared__ int qpos[ATT_WARPS * QPW];
    __shared__ int maxPos;

    const int D = headDim, G = heads / kvHeads, kh = blockIdx.y;
    const int QD = heads * D, KD = kvHeads * D, DS = D + 1;
    float* qs = smem;                   // [QB][D]
    float* ks = qs + QB * D;            // [BK][D+1], padded against bank conflicts
    float* vs = ks + ATT_BK * DS;       // [BK][D]
    int* ps = (int*)(vs + ATT_BK * D);  // [BK] slot positions of the tile
    int* gs = ps + ATT_BK;              // [BK] slot groups of the tile

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const i64 total = (i64)rows * G;
    const i64 t0 = (i64)blockIdx.x * QB;

    // Query vector t is row t/G, head kh·G + t%G.
    if (tid < QB) {
        i64 t = t0 + tid;
        qpos[tid] = (t < total) ? rowPos[t / G] : -1;
    }
    for (int i = tid; i < QB * D; i += blockDim.x) {
        int qi = i / D, d = i % D;
        i64 t = t0 + qi;
        float val = 0.f;
        if (t < total) {
            i64 r = t / G;
            int h = kh * G + (int)(t % G);
            val = q[r * QD + (i64)h * D + d];
        }
        qs[i] = val;
    }
    __syncthreads();
    if (tid == 0) {
        int m = -1;
        for (int i = 0; i < QB; i++) m = max(m, qpos[i]);
        maxPos = m;
    }
    __syncthreads();
    const int mp = maxPos;

    float invTemp[NG];
#pragma unroll
    for (int g = 0; g < NG; g++) invTemp[g] = (NG > 1 && g < nGroups) ? 1.f / groupTemp[g] : 1.f;

    float m[NG][QPW], l[NG][QPW], acc[NG][QPW][ATT_MAXDL];
#pragma unroll
    for (int g = 0; g < NG; g++)
#pragma unroll
        for (int a = 0; a < QPW; a++) {
            m[g][a] = NEG_BIG;
            l[g][a] = 0.f;
#pragma unroll
            for (int i = 0; i < ATT_MAXDL; i++) acc[g][a][i] = 0.f;
        }

    for (int base = 0; base < nSlots; base += ATT_BK) {
        const int n = min(ATT_BK, nSlots - base);
        int vis = 0;
        if (tid < ATT_BK) {
            int p = (tid < n) ? slotPos[base + tid] : -1;
            ps[tid] = p;
            gs[tid] = (NG > 1 && tid < n) ? (int)slotGroup[base + tid] : 0;
            vis = (p >= 0 && p <= mp);
        }
        if (!__syncthreads_or(vis)) continue;
        for (int i = tid; i < ATT_BK * D; i += blockDim.x) {
            int j = i / D, d = i % D;
            float kv = 0.f, vv = 0.f;
            if (j < n) {
                i64 o = (i64)(base + j) * KD + (i64)kh * D + d;
                kv = k[o];
                vv = v[o];
            }
            ks[j * DS + d] = kv;
            vs[j * D + d] = vv;
        }
        __syncthreads();

        float s[QPW];
#pragma unroll
        for (int a = 0; a < QPW; a++) s[a] = 0.f;
        const float* kr = ks + lane * DS;
        const float* qw = qs + warp * QPW * D;
        for (int d = 0; d < D; d++) {
            float kd = kr[d];
#pragma unroll
            for (int a = 0; a < QPW; a++) s[a] += qw[a * D + d] * kd;
        }
        const int pj = ps[lane];
        const int gj = gs[lane];
        float itj = 1.f;
#pragma unroll
        for (int g = 0; g < NG; g++)
            if (g == gj) itj = invTemp[g];

#pragma unroll
        for (int a = 0; a < QPW; a++) {
            const bool visible = lane < n && pj >= 0 && pj <= qpos[warp * QPW + a];
            const float sc = visible ? s[a] * scale * itj : NEG_INF;
            float p = 0.f;
#pragma unroll
            for (int g = 0; g < NG; g++) {
                const bool mine = visible && gj == g;
                const float tmax = warp_max(mine ? sc : NEG_INF);
                if (tmax == NEG_INF) continue; // uniform: a warp reduction
                const float mnew = fmaxf(m[g][a], tmax);
                const float alpha = expf(m[g][a] - mnew);
                const float pg = mine ? expf(sc - mnew) : 0.f;
                l[g][a] = l[g][a] * alpha + warp_sum(pg);
#pragma unroll
                for (int i = 0; i < ATT_MAXDL; i++) acc[g][a][i] *= alpha;
                m[g][a] = mnew;
                if (mine) p = pg;
            }
            for (int j = 0; j < n; j++) {
                const float pv = __shfl_sync(FULL_MASK, p, j);
                if (pv == 0.f) continue; // uniform: a broadcast
                const int gv = (NG > 1) ? gs[j] : 0;
                const float* vr = vs + j * D;
#pragma unroll
                for (int i = 0; i < ATT_MAXDL; i++) {
                    const int d = lane + 32 * i;
                    if (d < D) {
                        const float x = pv * vr[d];
#pragma unroll
                        for (int g = 0; g < NG; g++)
                            if (g == gv) acc[g][a][i] += x;
                    }
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int a = 0; a < QPW; a++) {
        const i64 t = t0 + warp * QPW + a;
        if (t >= total) continue;
        const i64 r = t / G;
        const int h = kh * G + (int)(t % G);
        float lse[NG], w[NG];
        float best = NEG_INF, z = 0.f;
#pragma unroll
        for (int g = 0; g < NG; g++) {
            lse[g] = NEG_INF;
            if (l[g][a] > 0.f) {
                const float sc = (NG > 1) ? groupLSEScale[g] : 1.f;
                lse[g] = sc * (m[g][a] + logf(l[g][a]));
                best = fmaxf(best, lse[g]);
            }
        }
#pragma unroll
        for (int g = 0; g < NG; g++) {
            w[g] = (lse[g] == NEG_INF || best == NEG_INF) ? 0.f : expf(lse[g] - best);
            z += w[g];
        }
        float* o = out + r * QD + (i64)h * D;
#pragma unroll
        for (int i = 0; i < ATT_MAXDL; i++) {
            const int d = lane + 32 * i;
            if (d < D) {
                float val = 0.f;
#pragma unroll
                for (int g = 0; g < NG; g++)
                    if (w[g] > 0.f) val += acc[g][a][i] * (w[g] / z / l[g][a]);
                o[d] = val;
            }
        }
        if (stats != 0 && lane == 0) {
            for (int g = 0; g < nGroups && g < NG; g++) {
                float* st = stats + ((r * heads + h) * nGroups + g) * 2;
                st[0] = m[g][a];
                st[1] = l[g][a];
            }
        }
    }
}

#define ATT_ARGS                                                                                      \
    float *out, float *stats, const float *q, const int *rowPos, int rows, const float *k, const float *v, \
        const int *slotPos, int nSlots, const unsigned char *slotGroup, const float *groupTemp,          \
        const float *groupLSEScale, int nGroups, int heads, int kvHeads, int headDim, float scale
#define ATT_PASS \
    out, stats, q, rowPos, rows, k, v, slotPos, nSlots, slotGroup, groupTemp, groupLSEScale, nGroups, heads, kvHeads, headDim, scale

// One group (plain causal attention), 4 query vectors per warp.
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attn_fwd_g1(ATT_ARGS) { attn_body<1, 4>(ATT_PASS); }
// Up to 4 slot groups (APE uses 2); fewer queries per warp keep the per-group
// accumulators in registers. (An 8-group instance tripled NVRTC's compile time.)
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attn_fwd_g4(ATT_ARGS) { attn_body<4, 2>(ATT_PASS); }

// Final attention probabilities [row][head][slot] from the statistics the
// forward kernel left in stats ([row][head][group]{max, sum}); one block per
// (row, head). Used only when a caller probes a layer.
extern "C" __global__ void attn_probs(float* probs, const float* stats, const float* q, const int* rowPos, int rows,
                                      const float* k, const int* slotPos, int nSlots, const unsigned char* slotGroup,
                                      const float* groupTemp, const float* groupLSEScale, int nGroups,
                                      int heads, int kvHeads, int headDim, float scale) {
    __shared__ float fac[8], mx[8];
    const int idx = blockIdx.x;
    if (idx >= rows * heads) return;
    const int r = idx / heads, h = idx % heads, kh = h / (heads / kvHeads);
    const int D = headDim;
    if (threadIdx.x == 0) {
        float lse[8], best = NEG_INF, z = 0.f;
        for (int g = 0; g < nGroups; g++) {
            const float* st = stats + ((i64)idx * nGroups + g) * 2;
            mx[g] = st[0];
            lse[g] = NEG_INF;
            if (st[1] > 0.f) {
                const float sc = (slotGroup != 0) ? groupLSEScale[g] : 1.f;
                lse[g] = sc * (st[0] + logf(st[1]));
                best = fmaxf(best, lse[g]);
            }
        }
        for (int g = 0; g < nGroups; g++) {
            fac[g] = (lse[g] == NEG_INF || best == NEG_INF) ? 0.f : expf(lse[g] - best);
            z += fac[g];
        }
        for (int g = 0; g < nGroups; g++) {
            const float* st = stats + ((i64)idx * nGroups + g) * 2;
            fac[g] = (fac[g] > 0.f) ? fac[g] / z / st[1] : 0.f;
        }
    }
    __syncthreads();
    const float* qv = q + (i64)r * heads * D + (i64)h * D;
    const int rp = rowPos[r];
    for (int j = threadIdx.x; j < nSlots; j += blockDim.x) {
        const int p = slotPos[j];
        float out = 0.f;
        if (p >= 0 && p <= rp) {
            const int g = (slotGroup != 0) ? (int)slotGroup[j] : 0;
            const float* kv = k + (i64)j * kvHeads * D + (i64)kh * D;
            float s = 0.f;
            for (int d = 0; d < D; d++) s += qv[d] * kv[d];
            s *= scale;
            if (slotGroup != 0) s /= groupTemp[g];
            out = expf(s - mx[g]) * fac[g];
        }
        probs[(i64)idx * nSlots + j] = out;
    }
}
