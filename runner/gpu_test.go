package runner

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"

	"cacheclip/gpu"
	"cacheclip/jobs"
)

// requireGPU opens CUDA device 0 or, without one, skips with the reason —
// unless CACHECLIP_REQUIRE_GPU=1 (scripts/gpu-check.sh sets it), where a
// missing device fails the test.
func requireGPU(t *testing.T) {
	t.Helper()
	d, err := gpu.Open(context.Background(), 0)
	if err != nil {
		if os.Getenv("CACHECLIP_REQUIRE_GPU") == "1" {
			t.Fatalf("CACHECLIP_REQUIRE_GPU=1 but no usable GPU: %v", err)
		}
		t.Skipf("no usable GPU (%v); CACHECLIP_REQUIRE_GPU=1 makes this a failure", err)
	}
	d.Close()
}

// TestGPUJobMatchesCPU runs the same test-bed job (48 questions, 8 chunks
// each) on the CPU and on the GPU, for every method, and compares the rows:
// at least 95% identical greedy answers, and a mean KL divergence of the
// first token's distribution (CPU ‖ GPU) of at most 1e-3. The GPU rounds
// weights and GEMM inputs to bf16, so answers may differ where two tokens are
// nearly tied; the bounds are the issue's.
func TestGPUJobMatchesCPU(t *testing.T) {
	requireGPU(t)
	primary, aux := "../testdata/testbed/primary", "../testdata/testbed/aux"
	dir := t.TempDir()
	corpus, questions := writeBenchData(t, dir, 48)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	texts, err := jobs.LoadCorpus(ctx, corpus, jobs.CorpusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		QueryID       string    `parquet:"query_id"`
		Status        string    `parquet:"status"`
		Answer        *string   `parquet:"answer,optional"`
		Device        string    `parquet:"device"`
		FirstLogProbs []float32 `parquet:"first_token_logprobs"`
	}
	run := func(t *testing.T, method, device string) map[string]row {
		spec := jobs.DefaultSpec()
		spec.Questions, spec.Model, spec.Aux = questions, primary, aux
		spec.Out = filepath.Join(dir, method+"-"+device)
		spec.Method, spec.Ratio, spec.MaxNewTokens, spec.BatchSize = method, 0.2, 8, 8
		spec.Device, spec.Diagnostics = device, true
		eng, err := NewEngine(ctx, spec, log)
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		st, err := Run(ctx, Options{Spec: spec, Stages: eng, Corpus: texts, Logger: log})
		if err != nil || st.OK != 48 {
			t.Fatalf("%s on %s: %v (ok %d)", method, device, err, st.OK)
		}
		out := map[string]row{}
		parts, _ := filepath.Glob(filepath.Join(spec.Out, "part-*.parquet"))
		for _, p := range parts {
			rs, err := parquet.ReadFile[row](p)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				out[r.QueryID] = r
			}
		}
		return out
	}
	for _, method := range []string{"full", "reuse", "ape", "cacheblend", "cacheclip"} {
		t.Run(method, func(t *testing.T) {
			cpu, dev := run(t, method, "cpu"), run(t, method, "cuda")
			same, n := 0, 0
			var klSum, klMax float64
			for id, c := range cpu {
				g, ok := dev[id]
				if !ok {
					t.Fatalf("%s: no GPU row", id)
				}
				if c.Device != "cpu" || g.Device == "cpu" || g.Device == "" {
					t.Fatalf("%s: devices %q and %q", id, c.Device, g.Device)
				}
				n++
				if c.Answer != nil && g.Answer != nil && *c.Answer == *g.Answer {
					same++
				}
				kl := klDiv(c.FirstLogProbs, g.FirstLogProbs)
				klSum += kl
				klMax = max(klMax, kl)
			}
			frac, klMean := float64(same)/float64(n), klSum/float64(n)
			t.Logf("%s: %d/%d identical greedy answers (%.1f%%), first-token KL mean %.2e max %.2e", method, same, n, 100*frac, klMean, klMax)
			if frac < 0.95 || klMean > 1e-3 || math.IsNaN(klMean) {
				t.Errorf("%s: GPU differs from CPU: %.1f%% identical answers (want ≥ 95%%), first-token KL %.2e (want ≤ 1e-3)", method, 100*frac, klMean)
			}
		})
	}
}

// klDiv is KL(p ‖ q) in nats for two log-probability vectors; a length
// mismatch is +Inf.
func klDiv(lp, lq []float32) float64 {
	if len(lp) != len(lq) || len(lp) == 0 {
		return math.Inf(1)
	}
	var kl float64
	for i := range lp {
		p := math.Exp(float64(lp[i]))
		kl += p * (float64(lp[i]) - float64(lq[i]))
	}
	return max(kl, 0)
}

func TestKLDiv(t *testing.T) {
	u := []float32{float32(math.Log(0.5)), float32(math.Log(0.5))}
	v := []float32{float32(math.Log(0.9)), float32(math.Log(0.1))}
	if got := klDiv(u, slices.Clone(u)); got != 0 {
		t.Fatalf("KL(p‖p) = %g", got)
	}
	// 0.5·ln(0.5/0.9) + 0.5·ln(0.5/0.1) = 0.5108...
	if got := klDiv(u, v); math.Abs(got-0.5108256) > 1e-6 {
		t.Fatalf("KL = %g, want 0.5108256", got)
	}
	if !math.IsInf(klDiv(u, v[:1]), 1) {
		t.Fatal("length mismatch is not +Inf")
	}
}
