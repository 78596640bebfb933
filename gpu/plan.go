package gpu

import (
	"fmt"
	"strings"

	"cacheclip/model"
)

// MemoryPlan is what a job needs in device memory, computed at job start from
// the model's shape and the job's settings before any weight is uploaded, so
// that a job that cannot fit is refused with what to lower instead of failing
// with an out-of-memory error halfway through a batch.
type MemoryPlan struct {
	Weights     uint64 // matrices as bf16, norms and biases as f32, the embedding in bf16
	KV          uint64 // f32 caches of every question of one batch at its longest
	Workspace   uint64 // activations of the largest forward call
	ShardCache  uint64 // the device-side chunk cache (LRU)
	Reserve     uint64 // left free for cuBLAS, kernels' modules and the driver
	Batch       int
	SlotsEach   int    // cache slots assumed per question
	PerQuestion uint64 // what one more question of a batch adds (its KV and logits)
}

// Total is the sum of the plan's parts.
func (p MemoryPlan) Total() uint64 {
	return p.Weights + p.KV + p.Workspace + p.ShardCache + p.Reserve
}

// planReserve is kept free for the driver, cuBLAS's workspace and the kernel
// modules: about what a context with cuBLAS loaded takes on an H100.
const planReserve = 768 << 20

// PlanMemory computes the plan for cfg: batch questions of at most slots cache
// slots each (the model's MaxPos when slots <= 0), forward calls of at most
// rows rows (model.DefaultAppendRows when rows <= 0) and a device chunk cache
// of shardCache bytes.
func PlanMemory(cfg *model.Config, batch, slots, rows int, shardCache uint64) MemoryPlan {
	if slots <= 0 {
		slots = cfg.MaxPos
	}
	if rows <= 0 {
		rows = model.DefaultAppendRows
	}
	d, kv, ff := uint64(cfg.Hidden), uint64(cfg.KVDim()), uint64(cfg.Intermediate)
	q := uint64(cfg.QDim())
	perLayer := 2*(d*q+2*d*kv+q*d+3*d*ff) + 4*(2*d+q+2*kv)
	w := uint64(cfg.Layers)*perLayer + 2*uint64(cfg.Vocab)*d + 4*d
	if !cfg.TiedEmbeddings {
		w += 2 * uint64(cfg.Vocab) * d
	}
	kvBytes := uint64(batch) * uint64(slots) * uint64(cfg.Layers) * 2 * kv * 4
	// f32 activations per row: residual, normed, q, k, v, attention out, gate,
	// up, plus bf16 copies of the GEMM inputs; logits for one row per question.
	r := uint64(rows)
	ws := r*4*(3*d+q+2*kv+2*ff) + r*2*(d+ff) + uint64(batch)*4*uint64(cfg.Vocab)
	return MemoryPlan{Weights: w, KV: kvBytes, Workspace: ws, ShardCache: shardCache,
		Reserve: planReserve, Batch: batch, SlotsEach: slots,
		PerQuestion: uint64(slots)*uint64(cfg.Layers)*2*kv*4 + 4*uint64(cfg.Vocab)}
}

// Check refuses a plan that does not fit in free bytes, naming the parts and
// what to lower: the batch size (it scales the KV), the device cache size, or
// a smaller model when the weights alone do not fit.
func (p MemoryPlan) Check(free uint64) error {
	if p.Total() <= free {
		return nil
	}
	var fix []string
	over := p.Total() - free
	if p.Weights+p.Reserve > free {
		fix = append(fix, "the weights alone do not fit: use a smaller model or --device cpu")
	} else {
		if p.ShardCache > 0 {
			fix = append(fix, fmt.Sprintf("lower device_cache (now %s) to at most %s", gib(p.ShardCache), gib(sat(p.ShardCache, over))))
		}
		if p.Batch > 1 && p.KV > 0 {
			room := sat(free, p.Total()-uint64(p.Batch)*p.PerQuestion)
			fix = append(fix, fmt.Sprintf("lower batch_size (now %d) to at most %d", p.Batch, max(1, int(room/p.PerQuestion))))
		}
	}
	return fmt.Errorf("GPU memory plan: needs %s (weights %s + KV of %d questions × %d slots %s + workspace %s + device cache %s + reserve %s) but %s is free; %s",
		gib(p.Total()), gib(p.Weights), p.Batch, p.SlotsEach, gib(p.KV), gib(p.Workspace), gib(p.ShardCache), gib(p.Reserve), gib(free), strings.Join(fix, ", or "))
}

// DefaultDeviceCache is the device chunk cache a job gets when it sets none:
// half of what the plan leaves free, so that a second job or a longer batch
// still has room.
func (p MemoryPlan) DefaultDeviceCache(free uint64) uint64 {
	need := p.Total() - p.ShardCache
	return sat(free, need) / 2
}

func sat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func gib(b uint64) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }
