package model

import (
	"context"
	"time"
)

// Stage names one step of a forward call, for StageTimes.
type Stage int

// The stages of Forward, in the order a layer runs them.
const (
	StageEmbed     Stage = iota // token embedding rows, RoPE tables
	StageAttnNorm               // RMSNorm before attention (fused with the previous layer's residual add)
	StageMatQKV                 // query, key and value projections (one hand-off in decode: kernels.MatMuls)
	StageBiasRoPE               // QKV bias and RoPE of queries and keys
	StageKVWrite                // keys and values into the cache
	StageAttention              // attention over the cache (QKᵀ, softmax, PV)
	StageMatO                   // output projection
	StageResidNorm              // residual add after attention and the RMSNorm before the MLP
	StageMatGateUp              // gate and up projections
	StageSiLUMul                // silu(gate)·up
	StageMatDown                // down projection
	StageResidAdd               // the last layer's MLP residual and the final norm, rows whose logits are asked for (other layers' residual is in StageAttnNorm)
	StageHead                   // LM head of the rows whose logits are asked for
	StageOther                  // pruning, checks, everything between the stages
	NumStages
)

var stageNames = [NumStages]string{"embed", "attn norm", "matmul Q,K,V", "bias + RoPE", "KV cache write",
	"attention", "matmul O", "residual + norm", "matmul gate,up", "SiLU·mul", "matmul down", "last residual + final norm", "LM head", "other"}

func (s Stage) String() string {
	if s < 0 || s >= NumStages {
		return "stage?"
	}
	return stageNames[s]
}

// StageTimes accumulates the wall time Forward spends in each stage while it is
// attached to the call's context (WithStageTimes): where prefill's time goes,
// measured by the engine itself. One StageTimes serves one forward call at a
// time.
type StageTimes struct {
	D     [NumStages]time.Duration
	Calls int
	last  time.Time
}

type stageKey struct{}

// WithStageTimes returns a context whose forward calls add their stage times to st.
func WithStageTimes(ctx context.Context, st *StageTimes) context.Context {
	return context.WithValue(ctx, stageKey{}, st)
}

func stageTimesFrom(ctx context.Context) *StageTimes {
	st, _ := ctx.Value(stageKey{}).(*StageTimes)
	if st != nil {
		st.Calls++
		st.last = time.Now()
	}
	return st
}

// lap charges the time since the previous lap to stage s; a nil receiver (no
// StageTimes attached) costs nothing.
func (st *StageTimes) lap(s Stage) {
	if st == nil {
		return
	}
	now := time.Now()
	st.D[s] += now.Sub(st.last)
	st.last = now
}

// Total is the sum over all stages.
func (st *StageTimes) Total() time.Duration {
	var t time.Duration
	for _, d := range st.D {
		t += d
	}
	return t
}
