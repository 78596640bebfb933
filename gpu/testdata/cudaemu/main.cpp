#include "emu.h"
#include <cstdio>
#include <random>
#include "norm.inc"
#include "rope.inc"
#include "elementwise.inc"
#include "rows.inc"
#include "init.inc"
#include "attention.inc"

static std::mt19937_64 rng(42);
static float nrm() { static std::normal_distribution<float> d; return d(rng); }
static int fails = 0;
#define CHECK(cond, ...) do { if (!(cond)) { printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

// Reference: kernels.Attention semantics, f64.
static void ref_attn(std::vector<float>& out, std::vector<float>& probs, const std::vector<float>& q, const std::vector<int>& rowPos,
                     const std::vector<float>& k, const std::vector<float>& v, const std::vector<int>& slotPos,
                     const std::vector<unsigned char>* sg, const std::vector<float>& temp, const std::vector<float>& lsc,
                     int H, int KV, int D, float scale, bool wantProbs) {
    int rows = rowPos.size(), n = slotPos.size(), QD = H * D, KD = KV * D;
    int nG = sg ? temp.size() : 1;
    out.assign(rows * QD, 0); probs.assign(wantProbs ? rows * H * n : 0, 0);
    for (int r = 0; r < rows; r++) for (int h = 0; h < H; h++) {
        int kh = h / (H / KV);
        std::vector<double> sc(n), mx(nG, -INFINITY), sum(nG, 0), acc(nG * D, 0), lse(nG), wg(nG, 0);
        for (int j = 0; j < n; j++) {
            if (slotPos[j] < 0 || slotPos[j] > rowPos[r]) continue;
            float dot = 0; for (int d = 0; d < D; d++) dot += q[r*QD+h*D+d] * k[j*KD+kh*D+d];
            double s = (double)(dot * scale); int g = sg ? (*sg)[j] : 0;
            if (sg) s /= temp[g];
            sc[j] = s; mx[g] = std::max(mx[g], s);
        }
        for (int j = 0; j < n; j++) {
            if (slotPos[j] < 0 || slotPos[j] > rowPos[r]) continue;
            int g = sg ? (*sg)[j] : 0; double e = exp(sc[j] - mx[g]); sum[g] += e;
            for (int d = 0; d < D; d++) acc[g*D+d] += e * v[j*KD+kh*D+d];
        }
        double best = -INFINITY;
        for (int g = 0; g < nG; g++) { if (sum[g] == 0) { lse[g] = -INFINITY; continue; } lse[g] = (sg ? lsc[g] : 1.0) * (mx[g] + log(sum[g])); best = std::max(best, lse[g]); }
        if (std::isinf(best)) continue;
        double z = 0; for (int g = 0; g < nG; g++) { if (std::isinf(lse[g])) continue; wg[g] = exp(lse[g] - best); z += wg[g]; }
        for (int g = 0; g < nG; g++) if (wg[g] != 0) for (int d = 0; d < D; d++) out[r*QD+h*D+d] += acc[g*D+d] * wg[g] / z / sum[g];
        if (wantProbs) for (int j = 0; j < n; j++) {
            if (slotPos[j] < 0 || slotPos[j] > rowPos[r]) continue;
            int g = sg ? (*sg)[j] : 0;
            probs[(r*H+h)*n+j] = exp(sc[j] - mx[g]) * wg[g] / z / sum[g];
        }
    }
}

static void test_attn(const char* name, int H, int KV, int D, int rows, int n, int groups, bool wantProbs) {
    int QD = H * D, KD = KV * D;
    std::vector<float> q(rows*QD), k(n*KD), v(n*KD);
    for (auto& x : q) x = nrm(); for (auto& x : k) x = nrm(); for (auto& x : v) x = nrm();
    std::vector<int> slotPos(n), rowPos(rows);
    for (auto& p : slotPos) { p = rng() % (n + 20); if (rng() % 10 == 0) p = -1; }
    for (auto& p : rowPos) p = rng() % (n + 10);
    rowPos[0] = 0;
    std::vector<unsigned char> sg(n); std::vector<float> temp, lsc;
    for (auto& g : sg) g = groups ? rng() % groups : 0;
    for (int i = 0; i < groups; i++) { temp.push_back(0.5f + (rng() % 1000) / 1000.f); lsc.push_back(0.5f + (rng() % 1000) / 1000.f); }
    float scale = 1 / sqrtf(D);
    std::vector<float> want, wprobs;
    ref_attn(want, wprobs, q, rowPos, k, v, slotPos, groups ? &sg : nullptr, temp, lsc, H, KV, D, scale, wantProbs);
    int nG = groups ? groups : 1;
    std::vector<float> out(rows*QD, -7), stats(rows*H*nG*2);
    int G = H / KV;
    auto run = [&](auto kern, int qpw) {
        int qb = 4 * qpw; int blocks = (rows*G + qb - 1) / qb;
        launch(dim3{(unsigned)blocks, (unsigned)KV, 1}, dim3{128, 1, 1}, kern, out.data(), stats.data(), (const float*)q.data(), (const int*)rowPos.data(), rows,
               (const float*)k.data(), (const float*)v.data(), (const int*)slotPos.data(), n, groups ? (const unsigned char*)sg.data() : (const unsigned char*)nullptr,
               groups ? (const float*)temp.data() : (const float*)nullptr, groups ? (const float*)lsc.data() : (const float*)nullptr, nG, H, KV, D, scale);
    };
    if (!groups) run(attn_fwd_g1, 4); else run(attn_fwd_g4, 2);
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); i++) { num = std::max(num, (double)fabs(out[i] - want[i])); den = std::max(den, (double)fabs(want[i])); }
    CHECK(num / den < 1e-4 && !std::isnan(num), "%s: attention max rel err %.3g", name, num / den);
    if (wantProbs) {
        std::vector<float> pr(rows*H*n, -1);
        launch(dim3{(unsigned)(rows*H), 1, 1}, dim3{128, 1, 1}, attn_probs, pr.data(), (const float*)stats.data(), (const float*)q.data(), (const int*)rowPos.data(), rows,
               (const float*)k.data(), (const int*)slotPos.data(), n, groups ? (const unsigned char*)sg.data() : (const unsigned char*)nullptr,
               groups ? (const float*)temp.data() : (const float*)nullptr, groups ? (const float*)lsc.data() : (const float*)nullptr, nG, H, KV, D, scale);
        double worst = 0; for (size_t i = 0; i < pr.size(); i++) worst = std::max(worst, (double)fabs(pr[i] - wprobs[i]));
        CHECK(worst < 1e-5, "%s: probs max abs err %.3g", name, worst);
    }
    printf("%s: rel err %.3g\n", name, num / den);
}

int main() {
    test_attn("mha hd16", 4, 4, 16, 13, 70, 0, false);
    test_attn("gqa hd8 probs", 8, 2, 8, 5, 33, 0, true);
    test_attn("gqa7 hd128", 28, 4, 128, 9, 100, 0, false);
    test_attn("gqa7 hd64 one group probs", 14, 2, 64, 9, 100, 1, true);
    test_attn("ape 3 groups probs", 4, 2, 32, 11, 150, 3, true);
    test_attn("4 groups hd256", 8, 1, 256, 6, 90, 4, false);
    test_attn("no probs groups 2 hd40", 6, 3, 40, 7, 64, 2, true);
    // RMSNorm
    { int rows = 3, n = 333; std::vector<float> x(rows*n), w(n), o(rows*n);
      for (auto& a : x) a = 2*nrm(); for (auto& a : w) a = nrm();
      launch(dim3{(unsigned)rows,1,1}, dim3{256,1,1}, rmsnorm_f32, o.data(), (const float*)x.data(), (const float*)w.data(), rows, n, 1e-5f);
      double worst = 0;
      for (int r = 0; r < rows; r++) { float ss = 0; for (int i = 0; i < n; i++) ss += x[r*n+i]*x[r*n+i];
        float inv = 1 / sqrt((double)ss / n + 1e-5); for (int i = 0; i < n; i++) worst = std::max(worst, (double)fabs(o[r*n+i] - x[r*n+i]*inv*w[i])); }
      CHECK(worst < 1e-5, "rmsnorm err %.3g", worst); printf("rmsnorm err %.3g\n", worst); }
    // RoPE table + apply vs direct rotation, both layouts; rerotate.
    for (int il = 0; il < 2; il++) { int rows = 4, heads = 3, hd = 16, half = 8;
      std::vector<double> inv(half); for (int i = 0; i < half; i++) inv[i] = 1 / pow(1e4, 2.0*i/hd);
      std::vector<int> pos = {0, 5, 1000, 31000}; std::vector<float> x(rows*heads*hd), c(rows*half), s(rows*half);
      for (auto& a : x) a = nrm(); auto x0 = x;
      int tot = rows*half; launch(dim3{(unsigned)((tot+255)/256),1,1}, dim3{256,1,1}, rope_table, c.data(), s.data(), (const int*)pos.data(), (const double*)inv.data(), rows, half);
      tot = rows*heads*half; launch(dim3{(unsigned)((tot+255)/256),1,1}, dim3{256,1,1}, rope_apply, x.data(), (const float*)c.data(), (const float*)s.data(), rows, heads, hd, il);
      double worst = 0;
      for (int r = 0; r < rows; r++) for (int h = 0; h < heads; h++) for (int f = 0; f < half; f++) {
        double a = pos[r]*inv[f]; float cc = cos(a), ss = sin(a);
        int i0 = il ? 2*f : f, i1 = il ? 2*f+1 : f+half; float* v0 = &x0[(r*heads+h)*hd];
        float e0 = v0[i0]*cc - v0[i1]*ss, e1 = v0[i0]*ss + v0[i1]*cc;
        worst = std::max(worst, (double)std::max(fabs(x[(r*heads+h)*hd+i0]-e0), fabs(x[(r*heads+h)*hd+i1]-e1))); }
      CHECK(worst < 1e-5, "rope il=%d err %.3g", il, worst);
      // rerotate from pos to pos2 == apply at pos2 on unrotated
      std::vector<int> pos2 = {7, 5, 10, 0}; auto y = x;
      launch(dim3{(unsigned)((tot+255)/256),1,1}, dim3{256,1,1}, rope_rerotate, y.data(), (const int*)pos.data(), (const int*)pos2.data(), (const double*)inv.data(), rows, heads, hd, il);
      auto z = x0;
      int t2 = rows*half; launch(dim3{(unsigned)((t2+255)/256),1,1}, dim3{256,1,1}, rope_table, c.data(), s.data(), (const int*)pos2.data(), (const double*)inv.data(), rows, half);
      launch(dim3{(unsigned)((tot+255)/256),1,1}, dim3{256,1,1}, rope_apply, z.data(), (const float*)c.data(), (const float*)s.data(), rows, heads, hd, il);
      double w2 = 0; for (size_t i = 0; i < z.size(); i++) w2 = std::max(w2, (double)fabs(y[i]-z[i]));
      CHECK(w2 < 1e-4, "rerotate il=%d err %.3g", il, w2); printf("rope il=%d err %.3g rerotate %.3g\n", il, worst, w2); }
    // f32 -> bf16 -> f32 and f16
    { std::vector<float> v = {1.0f, 1.00390625f, 1.005859375f, -0.0f, INFINITY, NAN, 1e-40f, 3.4e38f}; std::vector<unsigned short> b(v.size()); std::vector<float> back(v.size());
      launch(dim3{1,1,1}, dim3{256,1,1}, f32_to_bf16_k, b.data(), (const float*)v.data(), (i64)v.size());
      launch(dim3{1,1,1}, dim3{256,1,1}, bf16_to_f32_k, back.data(), (const unsigned short*)b.data(), (i64)v.size());
      printf("bf16:"); for (size_t i = 0; i < v.size(); i++) printf(" %g->%#x->%g", v[i], b[i], back[i]); printf("\n");
      CHECK(b[1] == 0x3f80 && b[2] == 0x3f81, "bf16 rounding to even wrong: %#x %#x", b[1], b[2]);
      std::vector<unsigned short> h = {0x3c00, 0x0001, 0x8400, 0x7c00, 0x7bff}; std::vector<float> hf(h.size());
      launch(dim3{1,1,1}, dim3{256,1,1}, f16_to_f32_k, hf.data(), (const unsigned short*)h.data(), (i64)h.size());
      CHECK(hf[0] == 1 && hf[1] == 5.9604645e-8f && hf[2] == -6.1035156e-5f && std::isinf(hf[3]) && hf[4] == 65504, "f16 wrong %g %g %g %g %g", hf[0], hf[1], hf[2], hf[3], hf[4]); }
    // fill_normal stats
    { int n = 200000; std::vector<float> x(n);
      launch(dim3{(unsigned)((n+255)/256),1,1}, dim3{256,1,1}, fill_normal_f32, x.data(), (i64)n, 42ull, 1.0f, 0.5f);
      double s = 0, ss = 0; for (float f : x) { s += f; ss += f*f; } double m = s/n, sd = sqrt(ss/n - m*m);
      CHECK(fabs(m-1) < 0.01 && fabs(sd-0.5) < 0.01, "fill_normal mean %g sd %g", m, sd); printf("fill_normal mean %.4f sd %.4f\n", m, sd); }
    printf(fails ? "FAILURES: %d\n" : "ALL OK\n", fails);
    return fails != 0;
}
