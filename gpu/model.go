package gpu

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"sync"

	"cacheclip/kernels"
	"cacheclip/model"
)

// devLayer is one block's weights on the device: matrices bf16, vectors f32.
type devLayer struct {
	attnNorm, mlpNorm Buffer
	wq, wk, wv, wo    Buffer
	wgate, wup, wdown Buffer
	bq, bk, bv        Buffer // zero Buffer when the model has no QKV bias
}

// Model is a model's weights resident on a device. Forward calls on one Model
// are serialised: they share a workspace.
type Model struct {
	Config model.Config
	dev    *Device
	fp     [32]byte // the CPU model's, so chunk caches are shared between backends

	embed      Buffer // in its stored dtype, for the exact embedding gather
	embedDType kernels.DType
	lmHead     Buffer // bf16, for the GEMM; aliases embed when both are bf16 and tied
	norm       Buffer
	layers     []devLayer
	invFreq    Buffer // f64 [HeadDim/2]

	mu sync.Mutex
	ws *workspace
}

var _ model.Backend = (*Model)(nil)

// Device is the device the model lives on.
func (m *Model) Device() *Device { return m.dev }

// ModelConfig is m.Config (model.Backend).
func (m *Model) ModelConfig() *model.Config { return &m.Config }

// Fingerprint is the fingerprint of the weights uploaded (model.Backend): the
// CPU model's for Upload, one derived from the config and seed for RandomModel.
func (m *Model) Fingerprint() [32]byte { return m.fp }

// Generate decodes every state to completion on the device (model.Backend):
// model.Decode over Forward, so sampling and stopping match the CPU backend.
func (m *Model) Generate(ctx context.Context, states []*model.GenState) error {
	return model.Decode(ctx, m, states)
}

// toBF16 returns the matrix as bf16 bits, row-major, converting f32 and f16
// storage (and the CPU kernels' panel layout, kernels.Pack).
func toBF16(w kernels.Mat) []uint16 {
	w = w.RowMajor()
	if w.DType == kernels.BF16 {
		return w.U16
	}
	out := make([]uint16, w.Rows*w.Cols)
	if w.DType.Quantized() {
		row := make([]float32, w.Cols)
		for r := 0; r < w.Rows; r++ {
			w.RowF32(r, row)
			kernels.FromF32(out[r*w.Cols:(r+1)*w.Cols], row, kernels.BF16)
		}
		return out
	}
	const step = 1 << 16
	buf := make([]float32, step)
	for off := 0; off < len(out); off += step {
		n := min(step, len(out)-off)
		if w.DType == kernels.F32 {
			copy(buf[:n], w.F32[off:off+n])
		} else {
			kernels.ToF32(buf[:n], w.U16[off:off+n], w.DType)
		}
		kernels.FromF32(out[off:off+n], buf[:n], kernels.BF16)
	}
	return out
}

// Upload copies a CPU model's weights to the device: matrices as bf16 (the GEMMs
// run bf16 × bf16 with f32 accumulation), norms and biases as f32, the
// embedding table also in its stored dtype so the gather is exact.
func Upload(ctx context.Context, d *Device, cpu *model.Model) (*Model, error) {
	unlock := d.bind()
	defer unlock()
	cfg := cpu.Config
	m := &Model{Config: cfg, dev: d, fp: cpu.Fingerprint(), embedDType: cpu.W.Embed.DType}
	ok := false
	defer func() {
		if !ok {
			m.freeLocked()
		}
	}()
	var err error
	mat := func(dst *Buffer, w kernels.Mat, name string) {
		if err != nil {
			return
		}
		if e := w.Validate(); e != nil {
			err = fmt.Errorf("upload %s: %w", name, e)
			return
		}
		if *dst, err = allocUpload(d, toBF16(w)); err != nil {
			err = fmt.Errorf("upload %s: %w", name, err)
		}
	}
	vec := func(dst *Buffer, v []float32, name string) {
		if err != nil || v == nil {
			return
		}
		if *dst, err = allocUpload(d, v); err != nil {
			err = fmt.Errorf("upload %s: %w", name, err)
		}
	}
	switch e := cpu.W.Embed.RowMajor(); e.DType {
	case kernels.F32:
		m.embed, err = allocUpload(d, e.F32)
	case kernels.Q4_1, kernels.Q8_0:
		// The device gathers f32 rows of a quantized table (exact widening).
		m.embedDType = kernels.F32
		f := make([]float32, e.Rows*e.Cols)
		for r := 0; r < e.Rows; r++ {
			e.RowF32(r, f[r*e.Cols:(r+1)*e.Cols])
		}
		m.embed, err = allocUpload(d, f)
	default:
		m.embed, err = allocUpload(d, e.U16)
	}
	if err != nil {
		return nil, fmt.Errorf("upload embedding: %w", err)
	}
	tiedBF16 := cpu.W.Embed.DType == kernels.BF16 && sameMat(cpu.W.Embed, cpu.W.LMHead)
	if tiedBF16 {
		m.lmHead = m.embed
	} else {
		mat(&m.lmHead, cpu.W.LMHead, "lm_head")
	}
	vec(&m.norm, cpu.W.Norm, "norm")
	m.layers = make([]devLayer, cfg.Layers)
	for l := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		L, D := &cpu.W.Layers[l], &m.layers[l]
		p := fmt.Sprintf("layer %d ", l)
		vec(&D.attnNorm, L.AttnNorm, p+"input_layernorm")
		vec(&D.mlpNorm, L.MLPNorm, p+"post_attention_layernorm")
		mat(&D.wq, L.Wq, p+"q_proj")
		mat(&D.wk, L.Wk, p+"k_proj")
		mat(&D.wv, L.Wv, p+"v_proj")
		mat(&D.wo, L.Wo, p+"o_proj")
		mat(&D.wgate, L.Wgate, p+"gate_proj")
		mat(&D.wup, L.Wup, p+"up_proj")
		mat(&D.wdown, L.Wdown, p+"down_proj")
		vec(&D.bq, L.Bq, p+"q_proj.bias")
		vec(&D.bk, L.Bk, p+"k_proj.bias")
		vec(&D.bv, L.Bv, p+"v_proj.bias")
	}
	if err != nil {
		return nil, err
	}
	if m.invFreq, err = allocUpload(d, cfg.InvFreq()); err != nil {
		return nil, fmt.Errorf("upload rope frequencies: %w", err)
	}
	ok = true
	return m, nil
}

func sameMat(a, b kernels.Mat) bool {
	if a.Rows != b.Rows || a.Cols != b.Cols || a.DType != b.DType {
		return false
	}
	if a.DType == kernels.F32 {
		return len(a.F32) > 0 && len(b.F32) > 0 && &a.F32[0] == &b.F32[0]
	}
	return len(a.U16) > 0 && len(b.U16) > 0 && &a.U16[0] == &b.U16[0]
}

// RandomModel makes a model of the given architecture with weights drawn on
// the device from seed (matrices N(0, 1/cols), norms around 1, small biases), so
// that benchmark models of production size never cross the bus.
func RandomModel(ctx context.Context, d *Device, cfg model.Config, seed uint64) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	unlock := d.bind()
	defer unlock()
	m := &Model{Config: cfg, dev: d, fp: randomFingerprint(cfg, seed), embedDType: kernels.BF16}
	ok := false
	defer func() {
		if !ok {
			m.freeLocked()
		}
	}()
	var err error
	next := seed
	gen := func(dst *Buffer, n int, bf16 bool, mean, std float32) {
		if err != nil {
			return
		}
		size := uint64(n) * 4
		if bf16 {
			size = uint64(n) * 2
		}
		if *dst, err = d.alloc(size); err != nil {
			return
		}
		next++
		name := "fill_normal_f32"
		if bf16 {
			name = "fill_normal_bf16"
		}
		err = d.flat(name, int64(n), dst.Ptr, int64(n), next, mean, std)
	}
	matN := func(dst *Buffer, rows, cols int) {
		gen(dst, rows*cols, true, 0, float32(1/math.Sqrt(float64(cols))))
	}
	H, I, QD, KD := cfg.Hidden, cfg.Intermediate, cfg.QDim(), cfg.KVDim()
	gen(&m.embed, cfg.Vocab*H, true, 0, 1)
	if cfg.TiedEmbeddings {
		m.lmHead = m.embed
	} else {
		gen(&m.lmHead, cfg.Vocab*H, true, 0, 1)
	}
	gen(&m.norm, H, false, 1, 0.1)
	m.layers = make([]devLayer, cfg.Layers)
	for l := range m.layers {
		L := &m.layers[l]
		gen(&L.attnNorm, H, false, 1, 0.1)
		gen(&L.mlpNorm, H, false, 1, 0.1)
		matN(&L.wq, QD, H)
		matN(&L.wk, KD, H)
		matN(&L.wv, KD, H)
		matN(&L.wo, H, QD)
		matN(&L.wgate, I, H)
		matN(&L.wup, I, H)
		matN(&L.wdown, H, I)
		if cfg.QKVBias {
			gen(&L.bq, QD, false, 0, 0.1)
			gen(&L.bk, KD, false, 0, 0.1)
			gen(&L.bv, KD, false, 0, 0.1)
		}
	}
	if err == nil {
		m.invFreq, err = allocUpload(d, cfg.InvFreq())
	}
	if err == nil {
		err = d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.compute))
	}
	if err != nil {
		return nil, fmt.Errorf("random model on %s: %w", d, err)
	}
	ok = true
	return m, nil
}

// randomFingerprint names RandomModel's weights: the config and the seed
// determine them.
func randomFingerprint(cfg model.Config, seed uint64) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "gpu.RandomModel %+v seed %d", cfg, seed))
}

// WeightBytes is the device memory the weights take.
func (m *Model) WeightBytes() uint64 {
	n := m.embed.Bytes + m.norm.Bytes + m.invFreq.Bytes
	if m.lmHead.Ptr != m.embed.Ptr {
		n += m.lmHead.Bytes
	}
	for _, L := range m.layers {
		for _, b := range []Buffer{L.attnNorm, L.mlpNorm, L.wq, L.wk, L.wv, L.wo, L.wgate, L.wup, L.wdown, L.bq, L.bk, L.bv} {
			n += b.Bytes
		}
	}
	return n
}

// Close frees the weights and the workspace.
func (m *Model) Close() error {
	unlock := m.dev.bind()
	defer unlock()
	m.dev.drv.cuStreamSynchronize(m.dev.compute)
	m.freeLocked()
	return nil
}

func (m *Model) freeLocked() {
	d := m.dev
	if m.lmHead.Ptr != m.embed.Ptr {
		d.free(m.lmHead)
	}
	d.free(m.embed)
	d.free(m.norm)
	d.free(m.invFreq)
	for _, L := range m.layers {
		for _, b := range []Buffer{L.attnNorm, L.mlpNorm, L.wq, L.wk, L.wv, L.wo, L.wgate, L.wup, L.wdown, L.bq, L.bk, L.bv} {
			d.free(b)
		}
	}
	m.layers = nil
	m.embed, m.lmHead, m.norm, m.invFreq = Buffer{}, Buffer{}, Buffer{}, Buffer{}
	if m.ws != nil {
		m.ws.free(d)
		m.ws = nil
	}
}
