package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"cacheclip/kernels"
	"cacheclip/model/safetensors"
)

// Layer holds one transformer block's weights in their stored dtype.
type Layer struct {
	AttnNorm   []float32
	Wq, Wk, Wv kernels.Mat
	Bq, Bk, Bv []float32
	Wo         kernels.Mat
	MLPNorm    []float32
	Wgate, Wup kernels.Mat
	Wdown      kernels.Mat
}

// Weights is a whole model's parameters.
type Weights struct {
	Embed  kernels.Mat
	Layers []Layer
	Norm   []float32
	LMHead kernels.Mat // aliases Embed when embeddings are tied
}

// tensorInfo is what the fingerprint covers of each tensor.
type tensorInfo struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// Model is a loaded checkpoint ready to run.
type Model struct {
	Config Config
	W      Weights
	Dir    string
	// Pool runs every CPU operation of the model, with its kernel set; a new
	// model gets one worker per CPU and the best kernels for it. Replace it
	// before use to set threads or kernels.
	Pool    *kernels.Pool
	invFreq []float64
	fp      [32]byte
	closer  io.Closer
	// packOnce packs W into the kernels' panel layout (packWeights) at the
	// first Pack or Forward.
	packOnce sync.Once
}

// Close releases memory-mapped weights.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	return m.closer.Close()
}

// Fingerprint identifies the model: its architecture config, every tensor's name,
// shape and dtype, and a sample of each tensor's bytes (64 evenly spaced 64-byte
// windows). Sampling keeps fingerprinting a 15 GB checkpoint to milliseconds while
// still telling apart two checkpoints of the same shape (fine-tunes change nearly
// every weight); it cannot tell models that differ in a few unsampled bytes.
func (m *Model) Fingerprint() [32]byte { return m.fp }

func fingerprint(cfg *Config, tensors []tensorInfo) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "cacheclip-model-v1|%s|h%d|i%d|l%d|q%d|kv%d|hd%d|v%d|eps%g|theta%g|inter%v|bias%v|tied%v",
		cfg.Arch, cfg.Hidden, cfg.Intermediate, cfg.Layers, cfg.Heads, cfg.KVHeads, cfg.HeadDim, cfg.Vocab,
		cfg.RMSEps, cfg.RopeTheta, cfg.RopeInterleaved, cfg.QKVBias, cfg.TiedEmbeddings)
	if rs := cfg.RopeScaling; rs != nil {
		fmt.Fprintf(h, "|rs:%s:%g:%g:%g:%d", rs.Type, rs.Factor, rs.LowFreqFactor, rs.HighFreqFactor, rs.OriginalMaxPos)
	}
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].name < tensors[j].name })
	var buf [8]byte
	for _, t := range tensors {
		fmt.Fprintf(h, "|%s:%s:%v", t.name, t.dtype, t.shape)
		const windows, width = 64, 64
		n := len(t.data)
		binary.LittleEndian.PutUint64(buf[:], uint64(n))
		h.Write(buf[:])
		if n <= windows*width {
			h.Write(t.data)
			continue
		}
		for w := 0; w < windows; w++ {
			off := int(int64(n-width) * int64(w) / (windows - 1))
			h.Write(t.data[off : off+width])
		}
	}
	var fp [32]byte
	copy(fp[:], h.Sum(nil))
	return fp
}

// LoadDir loads a Hugging Face model directory: config.json and safetensors.
func LoadDir(dir string) (*Model, error) {
	cfg, err := LoadConfig(configPath(dir))
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	m, err := fromTensors(cfg, set.Tensors)
	if err != nil {
		_ = set.Close()
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	m.Dir = dir
	m.closer = set
	return m, nil
}

func fromTensors(cfg *Config, ts map[string]*safetensors.Tensor) (*Model, error) {
	var infos []tensorInfo
	used := map[string]bool{}
	mat := func(name string, rows, cols int) (kernels.Mat, error) {
		t, ok := ts[name]
		if !ok {
			return kernels.Mat{}, fmt.Errorf("tensor %s: missing", name)
		}
		used[name] = true
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != cols {
			return kernels.Mat{}, fmt.Errorf("tensor %s in %s: shape %v, want [%d %d]", name, t.File, t.Shape, rows, cols)
		}
		dt, err := kernels.ParseDType(t.DType)
		if err != nil {
			return kernels.Mat{}, fmt.Errorf("tensor %s in %s: %w", name, t.File, err)
		}
		infos = append(infos, tensorInfo{name, t.DType, t.Shape, t.Data})
		m := kernels.Mat{DType: dt, Rows: rows, Cols: cols}
		if dt == kernels.F32 {
			m.F32 = t.F32()
		} else {
			m.U16 = t.U16()
		}
		return m, nil
	}
	vec := func(name string, n int, optional bool) ([]float32, error) {
		t, ok := ts[name]
		if !ok {
			if optional {
				return nil, nil
			}
			return nil, fmt.Errorf("tensor %s: missing", name)
		}
		used[name] = true
		if len(t.Shape) != 1 || t.Shape[0] != n {
			return nil, fmt.Errorf("tensor %s in %s: shape %v, want [%d]", name, t.File, t.Shape, n)
		}
		infos = append(infos, tensorInfo{name, t.DType, t.Shape, t.Data})
		dt, err := kernels.ParseDType(t.DType)
		if err != nil {
			return nil, fmt.Errorf("tensor %s in %s: %w", name, t.File, err)
		}
		out := make([]float32, n)
		if dt == kernels.F32 {
			copy(out, t.F32())
		} else {
			kernels.ToF32(out, t.U16(), dt)
		}
		return out, nil
	}
	var w Weights
	var err error
	if w.Embed, err = mat("model.embed_tokens.weight", cfg.Vocab, cfg.Hidden); err != nil {
		return nil, err
	}
	if w.Norm, err = vec("model.norm.weight", cfg.Hidden, false); err != nil {
		return nil, err
	}
	if _, ok := ts["lm_head.weight"]; ok && !cfg.TiedEmbeddings {
		if w.LMHead, err = mat("lm_head.weight", cfg.Vocab, cfg.Hidden); err != nil {
			return nil, err
		}
	} else {
		if !cfg.TiedEmbeddings {
			return nil, fmt.Errorf("tensor lm_head.weight: missing and tie_word_embeddings is false")
		}
		used["lm_head.weight"] = true
		w.LMHead = w.Embed
	}
	w.Layers = make([]Layer, cfg.Layers)
	for i := range w.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		L := &w.Layers[i]
		steps := []func() error{
			func() (e error) { L.AttnNorm, e = vec(p+"input_layernorm.weight", cfg.Hidden, false); return },
			func() (e error) { L.MLPNorm, e = vec(p+"post_attention_layernorm.weight", cfg.Hidden, false); return },
			func() (e error) { L.Wq, e = mat(p+"self_attn.q_proj.weight", cfg.QDim(), cfg.Hidden); return },
			func() (e error) { L.Wk, e = mat(p+"self_attn.k_proj.weight", cfg.KVDim(), cfg.Hidden); return },
			func() (e error) { L.Wv, e = mat(p+"self_attn.v_proj.weight", cfg.KVDim(), cfg.Hidden); return },
			func() (e error) { L.Wo, e = mat(p+"self_attn.o_proj.weight", cfg.Hidden, cfg.QDim()); return },
			func() (e error) { L.Wgate, e = mat(p+"mlp.gate_proj.weight", cfg.Intermediate, cfg.Hidden); return },
			func() (e error) { L.Wup, e = mat(p+"mlp.up_proj.weight", cfg.Intermediate, cfg.Hidden); return },
			func() (e error) { L.Wdown, e = mat(p+"mlp.down_proj.weight", cfg.Hidden, cfg.Intermediate); return },
			func() (e error) { L.Bq, e = vec(p+"self_attn.q_proj.bias", cfg.QDim(), !cfg.QKVBias); return },
			func() (e error) { L.Bk, e = vec(p+"self_attn.k_proj.bias", cfg.KVDim(), !cfg.QKVBias); return },
			func() (e error) { L.Bv, e = vec(p+"self_attn.v_proj.bias", cfg.KVDim(), !cfg.QKVBias); return },
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return nil, err
			}
		}
	}
	for name := range ts {
		if !used[name] && !isIgnorable(name) {
			return nil, fmt.Errorf("tensor %s in %s: not used by the %s architecture (wrong model type?)", name, ts[name].File, cfg.Arch)
		}
	}
	return newModel(cfg, w, fingerprint(cfg, infos)), nil
}

// isIgnorable names buffers some exporters save that carry no parameters.
func isIgnorable(name string) bool {
	const suffix = "rotary_emb.inv_freq"
	return len(name) >= len(suffix) && name[len(name)-len(suffix):] == suffix
}

// FromWeights builds a model from weights already in memory (generated test and
// benchmark models); the fingerprint covers them as LoadDir's does.
func FromWeights(cfg *Config, w Weights) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var infos []tensorInfo
	add := func(name string, m kernels.Mat) {
		if m.DType.Quantized() {
			// The values a load widened to f32 would hold, so that one GGUF
			// has one fingerprint whichever way its weights are kept.
			infos = append(infos, tensorInfo{name, "F32", []int{m.Rows, m.Cols}, f32Bytes(sampleQuant(m))})
		} else if m.DType == kernels.F32 {
			infos = append(infos, tensorInfo{name, "F32", []int{m.Rows, m.Cols}, f32Bytes(sample(m.F32, m))})
		} else {
			infos = append(infos, tensorInfo{name, m.DType.String(), []int{m.Rows, m.Cols}, u16Bytes(sample(m.U16, m))})
		}
	}
	add("embed", w.Embed)
	add("lm_head", w.LMHead)
	for i, L := range w.Layers {
		for j, m := range []kernels.Mat{L.Wq, L.Wk, L.Wv, L.Wo, L.Wgate, L.Wup, L.Wdown} {
			add(fmt.Sprintf("l%d.%d", i, j), m)
		}
	}
	return newModel(cfg, w, fingerprint(cfg, infos)), nil
}

// sampleIndices are the row-major positions of the values the fingerprint
// covers of an n-element matrix: all of a small one, 4096 spread over a large.
func sampleIndices(n int) []int {
	k := min(n, 4096)
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
		if n > 4096 {
			idx[i] = i * (n - 1) / 4095
		}
	}
	return idx
}

// sample reads the sampled values of m from its backing slice s (m.F32 or
// m.U16) by row-major position (Mat.Index), so that weights in panel layout
// (a model cut from a loaded one) fingerprint as their file does.
func sample[T float32 | uint16](s []T, m kernels.Mat) []T {
	idx := sampleIndices(m.Rows * m.Cols)
	out := make([]T, len(idx))
	for i, j := range idx {
		out[i] = s[m.Index(j)]
	}
	return out
}

func u16Bytes(s []uint16) []byte {
	out := make([]byte, 2*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint16(out[2*i:], v)
	}
	return out
}

func newModel(cfg *Config, w Weights, fp [32]byte) *Model {
	return &Model{Config: *cfg, W: w, Pool: kernels.NewPool(0), invFreq: cfg.InvFreq(), fp: fp}
}

// Pack converts the weights into the product kernels' panel layout
// (packWeights), once; Forward calls it first, so calling it is only a way
// to pay for it at a chosen time (a benchmark before its timer, a job before
// its first question). It is not done at load because some models never run
// on the CPU: weights that only go to a GPU (gpu.Upload reads them
// row-major) or a model loaded only to be cut (FirstLayers, whose cut
// packs just its own layers) would be copied from the mapped file to the
// heap for nothing.
func (m *Model) Pack() {
	m.packOnce.Do(func() { m.W = packWeights(m.W) })
}

// packWeights converts the f32, f16 and bf16 matrices of the linear layers
// into the product kernels' panel layout once (Model.Pack; kernels.Pack: the
// same values permuted into a heap copy — the mapped file's pages stay page
// cache, the kernel's to drop), so that no product packs them per call. The LM head is packed
// too, and with it the embedding table when the head is tied to it (a
// lookup gathers its row from the panels: 2,048 tokens of Qwen2.5-0.5B cost
// about 1.8 M strided reads, well under 1% of their prefill); an untied
// table stays row-major.
func packWeights(w Weights) Weights {
	w.Layers = append([]Layer(nil), w.Layers...)
	var mats []*kernels.Mat
	for i := range w.Layers {
		L := &w.Layers[i]
		mats = append(mats, &L.Wq, &L.Wk, &L.Wv, &L.Wo, &L.Wgate, &L.Wup, &L.Wdown)
	}
	// A tied head is the embedding table: packed once for both, the
	// embedding lookups gather their rows from the panels (RowF32).
	tied := sameBacking(w.LMHead, w.Embed)
	if tied {
		mats = append(mats, &w.Embed)
	} else {
		mats = append(mats, &w.LMHead)
	}
	// One matrix per CPU at a time: a permutation bound by memory latency.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(mats)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(mats); i = int(next.Add(1)) - 1 {
				*mats[i] = kernels.Pack(*mats[i])
			}
		}()
	}
	wg.Wait()
	if tied {
		w.LMHead = w.Embed
	}
	return w
}

// sameBacking reports whether two matrices share their first element.
func sameBacking(a, b kernels.Mat) bool {
	switch {
	case len(a.F32) > 0 && len(b.F32) > 0:
		return &a.F32[0] == &b.F32[0]
	case len(a.U16) > 0 && len(b.U16) > 0:
		return &a.U16[0] == &b.U16[0]
	case len(a.Q) > 0 && len(b.Q) > 0:
		return &a.Q[0] == &b.Q[0]
	}
	return false
}

// LoadLlama2C reads a llama2.c checkpoint (version 0: 7 int32 header, then f32
// weights in run.c's order). Its RoPE rotates adjacent pairs.
func LoadLlama2C(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2.c checkpoint: %w", err)
	}
	if len(b) < 28 {
		return nil, fmt.Errorf("llama2.c checkpoint %s: %d bytes, too short for the header", path, len(b))
	}
	hdr := make([]int32, 7)
	for i := range hdr {
		hdr[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	dim, hidden, layers, heads, kvHeads, vocab, seqLen := int(hdr[0]), int(hdr[1]), int(hdr[2]), int(hdr[3]), int(hdr[4]), int(hdr[5]), int(hdr[6])
	shared := vocab > 0
	if vocab < 0 {
		vocab = -vocab
	}
	cfg := &Config{Arch: "llama2c", Hidden: dim, Intermediate: hidden, Layers: layers, Heads: heads, KVHeads: kvHeads,
		Vocab: vocab, MaxPos: seqLen, RMSEps: 1e-5, RopeTheta: 10000, RopeInterleaved: true, TiedEmbeddings: shared,
		BOS: []int32{1}, EOS: []int32{2}}
	if heads > 0 {
		cfg.HeadDim = dim / heads
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("llama2.c checkpoint %s: header: %w", path, err)
	}
	floats := (len(b) - 28) / 4
	f := make([]float32, floats)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[28+4*i:]))
	}
	off := 0
	var errShort error
	take := func(name string, n int) []float32 {
		if errShort != nil {
			return nil
		}
		if off+n > len(f) {
			errShort = fmt.Errorf("llama2.c checkpoint %s: truncated in tensor %s (need %d floats at offset %d, file has %d)", path, name, n, off, len(f))
			return nil
		}
		s := f[off : off+n : off+n]
		off += n
		return s
	}
	kvDim := cfg.KVDim()
	qDim := cfg.QDim()
	mk := func(s []float32, rows, cols int) kernels.Mat {
		return kernels.Mat{DType: kernels.F32, Rows: rows, Cols: cols, F32: s}
	}
	var infos []tensorInfo
	addInfo := func(name string, s []float32, shape ...int) {
		infos = append(infos, tensorInfo{name: name, dtype: "F32", shape: shape, data: f32Bytes(s)})
	}
	emb := take("token_embedding_table", vocab*dim)
	rmsAtt := take("rms_att_weight", layers*dim)
	wq := take("wq", layers*qDim*dim)
	wk := take("wk", layers*kvDim*dim)
	wv := take("wv", layers*kvDim*dim)
	wo := take("wo", layers*dim*qDim)
	rmsFFN := take("rms_ffn_weight", layers*dim)
	w1 := take("w1", layers*hidden*dim)
	w2 := take("w2", layers*dim*hidden)
	w3 := take("w3", layers*hidden*dim)
	rmsFinal := take("rms_final_weight", dim)
	take("freq_cis_real", seqLen*cfg.HeadDim/2)
	take("freq_cis_imag", seqLen*cfg.HeadDim/2)
	var wcls []float32
	if !shared {
		wcls = take("wcls", vocab*dim)
	}
	if errShort != nil {
		return nil, errShort
	}
	// The norms (and an untied embedding table, which is not packed) are
	// cloned out of f so that f, the whole checkpoint as floats, is garbage
	// once the linear layers are packed.
	var w Weights
	if !shared {
		emb = slices.Clone(emb)
	}
	w.Embed = mk(emb, vocab, dim)
	addInfo("embed", emb, vocab, dim)
	w.Norm = slices.Clone(rmsFinal)
	addInfo("norm", rmsFinal, dim)
	if shared {
		w.LMHead = w.Embed
	} else {
		w.LMHead = mk(wcls, vocab, dim)
		addInfo("wcls", wcls, vocab, dim)
	}
	w.Layers = make([]Layer, layers)
	for l := range w.Layers {
		L := &w.Layers[l]
		L.AttnNorm = slices.Clone(rmsAtt[l*dim : (l+1)*dim])
		L.MLPNorm = slices.Clone(rmsFFN[l*dim : (l+1)*dim])
		L.Wq = mk(wq[l*qDim*dim:(l+1)*qDim*dim], qDim, dim)
		L.Wk = mk(wk[l*kvDim*dim:(l+1)*kvDim*dim], kvDim, dim)
		L.Wv = mk(wv[l*kvDim*dim:(l+1)*kvDim*dim], kvDim, dim)
		L.Wo = mk(wo[l*dim*qDim:(l+1)*dim*qDim], dim, qDim)
		L.Wgate = mk(w1[l*hidden*dim:(l+1)*hidden*dim], hidden, dim)
		L.Wdown = mk(w2[l*dim*hidden:(l+1)*dim*hidden], dim, hidden)
		L.Wup = mk(w3[l*hidden*dim:(l+1)*hidden*dim], hidden, dim)
	}
	addInfo("layers", f[vocab*dim:off], off-vocab*dim)
	m := newModel(cfg, w, fingerprint(cfg, infos))
	m.Dir = path
	return m, nil
}

func f32Bytes(s []float32) []byte {
	out := make([]byte, 4*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}
