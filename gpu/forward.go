package gpu

import (
	"context"
	"fmt"
	"math"

	"cacheclip/model"
)

// maxAttnGroups is the most slot groups the fused attention kernels take.
const maxAttnGroups = 4

// workspace holds the activations of up to rows rows; it grows, never shrinks.
type workspace struct {
	rows, logitRows                                             int
	x, xn, xb, q, k, v, att, gate, up, tmp, scratch, cosT, sinT Buffer
	tok, pos, slot, idx                                         Buffer
	stats                                                       Buffer
	hn, logits                                                  Buffer
}

func (w *workspace) free(d *Device) {
	for _, b := range []Buffer{w.x, w.xn, w.xb, w.q, w.k, w.v, w.att, w.gate, w.up, w.tmp, w.scratch, w.cosT, w.sinT,
		w.tok, w.pos, w.slot, w.idx, w.stats, w.hn, w.logits} {
		d.free(b)
	}
}

func (m *Model) workspaceFor(rows, logitRows int) (*workspace, error) {
	if w := m.ws; w != nil && w.rows >= rows && w.logitRows >= logitRows {
		return w, nil
	}
	d := m.dev
	if m.ws != nil {
		d.drv.cuStreamSynchronize(d.compute)
		rows = max(rows, m.ws.rows)
		logitRows = max(logitRows, m.ws.logitRows)
		m.ws.free(d)
		m.ws = nil
	}
	cfg := &m.Config
	H, QD, KD, I := cfg.Hidden, cfg.QDim(), cfg.KVDim(), cfg.Intermediate
	widest := max(H, QD, I)
	R := uint64(rows)
	w := &workspace{rows: rows, logitRows: logitRows}
	var err error
	al := func(b *Buffer, n uint64) {
		if err == nil {
			*b, err = d.alloc(n)
		}
	}
	al(&w.x, R*uint64(H)*4)
	al(&w.xn, R*uint64(H)*4)
	al(&w.xb, R*uint64(widest)*2)
	al(&w.q, R*uint64(QD)*4)
	al(&w.k, R*uint64(KD)*4)
	al(&w.v, R*uint64(KD)*4)
	al(&w.att, R*uint64(QD)*4)
	al(&w.gate, R*uint64(I)*4)
	al(&w.up, R*uint64(I)*4)
	al(&w.tmp, R*uint64(H)*4)
	al(&w.scratch, R*uint64(widest)*4)
	al(&w.cosT, R*uint64(cfg.HeadDim/2)*4)
	al(&w.sinT, R*uint64(cfg.HeadDim/2)*4)
	al(&w.tok, R*4)
	al(&w.pos, R*4)
	al(&w.slot, R*4)
	al(&w.idx, R*4)
	al(&w.stats, R*uint64(cfg.Heads)*maxAttnGroups*2*4)
	al(&w.hn, uint64(max(logitRows, 1))*uint64(H)*4)
	al(&w.logits, uint64(max(logitRows, 1))*uint64(cfg.Vocab)*4)
	if err != nil {
		w.free(d)
		return nil, fmt.Errorf("gpu workspace for %d rows: %w", rows, err)
	}
	m.ws = w
	return w, nil
}

func off(b Buffer, elems, size int) DevPtr { return b.Ptr + DevPtr(uint64(elems)*uint64(size)) }

// checkSeq validates a sequence as model.Forward does, so bad input is an error
// on either backend.
func (m *Model) checkSeq(s *model.Seq) (*Cache, error) {
	cfg := &m.Config
	if s.Cache == nil {
		return nil, fmt.Errorf("no cache")
	}
	c, ok := s.Cache.(*Cache)
	if !ok {
		return nil, fmt.Errorf("a %T is not a device cache", s.Cache)
	}
	if c.dev != m.dev {
		return nil, fmt.Errorf("cache lives on another device")
	}
	if c.Layers != cfg.Layers || c.KVDim != cfg.KVDim() {
		return nil, fmt.Errorf("cache shaped for %d layers × %d, model has %d × %d", c.Layers, c.KVDim, cfg.Layers, cfg.KVDim())
	}
	if g := s.Groups; g != nil && len(g.Temp) > maxAttnGroups {
		return nil, fmt.Errorf("attention groups: %d groups, the CUDA kernels take at most %d", len(g.Temp), maxAttnGroups)
	}
	return c, cfg.CheckRows(s.Tokens, s.Pos, s.Slots, s.Logits, c.Len(), s.Groups)
}

// seqGroups is a sequence's attention groups on the device.
type seqGroups struct {
	slotGroup, temp, lseScale Buffer
	n                         int
}

// Forward is model.Forward on the device (model.Backend): the same rows,
// slots, positions, groups, probes and pruning, with GEMMs in bf16 (f32
// accumulation) and everything else in f32. A cache with loads in flight
// (Cache.Await) is written layer by layer as its loads land.
func (m *Model) Forward(ctx context.Context, seqs []*model.Seq) ([]model.Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := &m.Config
	caches, R, err := model.CheckSeqs(seqs, m.checkSeq)
	if err != nil {
		return nil, err
	}
	W := 0
	for _, s := range seqs {
		W += len(s.Logits)
	}
	outs := make([]model.Output, len(seqs))
	if R == 0 {
		return outs, nil
	}
	d := m.dev
	unlock := d.bind()
	defer unlock()
	ws, err := m.workspaceFor(R, W)
	if err != nil {
		return nil, err
	}
	H, D, QD, KD, I := cfg.Hidden, cfg.HeadDim, cfg.QDim(), cfg.KVDim(), cfg.Intermediate
	half := D / 2
	rows := model.NewRows(seqs)
	pos, slot, spans := rows.Pos, rows.Slot, rows.Spans
	tok := make([]int32, 0, R)
	ready := make([]*Pending, len(seqs))
	for si, s := range seqs {
		c := caches[si]
		tok = append(tok, s.Tokens...)
		for i, sl := range s.Slots {
			c.Pos[sl] = s.Pos[i]
		}
		c.posDirty = true
		ready[si], c.ready = c.ready, nil
	}
	groups := make([]*seqGroups, len(seqs))
	defer func() {
		d.drv.cuStreamSynchronize(d.compute)
		for _, g := range groups {
			if g != nil {
				d.free(g.slotGroup)
				d.free(g.temp)
				d.free(g.lseScale)
			}
		}
	}()
	for si, s := range seqs {
		if err := caches[si].syncPos(); err != nil {
			return nil, err
		}
		if g := s.Groups; g != nil {
			n := caches[si].Len()
			sg := &seqGroups{n: len(g.Temp)}
			groups[si] = sg
			if sg.slotGroup, err = allocUpload(d, g.SlotGroup[:n]); err != nil {
				return nil, err
			}
			if sg.temp, err = allocUpload(d, g.Temp); err != nil {
				return nil, err
			}
			if sg.lseScale, err = allocUpload(d, g.LSEScale); err != nil {
				return nil, err
			}
		}
	}
	for _, step := range []struct {
		b   Buffer
		src []int32
	}{{ws.tok, tok}, {ws.pos, pos}, {ws.slot, slot}} {
		if err := uploadAsync(d, step.b.Ptr, step.src); err != nil {
			return nil, err
		}
	}
	embedKernel := map[string]string{"f32": "embed_f32", "f16": "embed_f16", "bf16": "embed_bf16"}[m.embedDType.String()]
	if err := d.flat(embedKernel, int64(R*H), ws.x, m.embed, ws.tok, R, H); err != nil {
		return nil, err
	}
	if err := d.flat("rope_table", int64(R*half), ws.cosT, ws.sinT, ws.pos, m.invFreq, R, half); err != nil {
		return nil, err
	}
	scale := float32(1 / math.Sqrt(float64(D)))
	interleaved := boolInt(cfg.RopeInterleaved)
	// linear runs y = x·W^T with x widened activations rounded to bf16.
	linear := func(y Buffer, x Buffer, w Buffer, rows, in, out int) error {
		if err := d.flat("f32_to_bf16_k", int64(rows*in), ws.xb, x, int64(rows*in)); err != nil {
			return err
		}
		return d.linear(y.Ptr, ws.xb.Ptr, w.Ptr, rows, in, out)
	}
	rmsnorm := func(out, x, w Buffer, rows int) error {
		return d.launch("rmsnorm_f32", [3]uint32{uint32(rows), 1, 1}, [3]uint32{256, 1, 1}, 0, out, x, w, rows, H, cfg.RMSEps)
	}
	for l := 0; l < cfg.Layers; l++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		L := &m.layers[l]
		R = len(pos)
		steps := []func() error{
			func() error { return rmsnorm(ws.xn, ws.x, L.attnNorm, R) },
			func() error { return linear(ws.q, ws.xn, L.wq, R, H, QD) },
			func() error { return d.linear(ws.k.Ptr, ws.xb.Ptr, L.wk.Ptr, R, H, KD) },
			func() error { return d.linear(ws.v.Ptr, ws.xb.Ptr, L.wv.Ptr, R, H, KD) },
			func() error {
				if L.bq.Ptr == 0 {
					return nil
				}
				for _, b := range []struct {
					x, b  Buffer
					width int
				}{{ws.q, L.bq, QD}, {ws.k, L.bk, KD}, {ws.v, L.bv, KD}} {
					if err := d.flat("add_bias_rows", int64(R*b.width), b.x, b.b, R, b.width); err != nil {
						return err
					}
				}
				return nil
			},
			func() error {
				return d.flat("rope_apply", int64(R*cfg.Heads*half), ws.q, ws.cosT, ws.sinT, R, cfg.Heads, D, interleaved)
			},
			func() error {
				return d.flat("rope_apply", int64(R*cfg.KVHeads*half), ws.k, ws.cosT, ws.sinT, R, cfg.KVHeads, D, interleaved)
			},
		}
		for _, st := range steps {
			if err := st(); err != nil {
				return nil, fmt.Errorf("forward layer %d: %w", l, err)
			}
		}
		// A sequence's rows of layer l go into its cache only after the
		// shard loads of layer l have landed; so does a prune hook's look at
		// the cache.
		for si := range seqs {
			if ready[si] != nil && spans[si].Hi > spans[si].Lo {
				if err := ready[si].waitLayer(d, l); err != nil {
					return nil, err
				}
			}
		}
		// Pruning (CacheBlend's selection at its check layer) needs the fresh
		// keys and values on the host.
		keep, pruned, err := rows.Prune(seqs, l, func(lo, hi int) ([]float32, []float32, error) {
			hk := make([]float32, (hi-lo)*KD)
			hv := make([]float32, (hi-lo)*KD)
			if err := download(d, hk, off(ws.k, lo*KD, 4)); err != nil {
				return nil, nil, err
			}
			if err := download(d, hv, off(ws.v, lo*KD, 4)); err != nil {
				return nil, nil, err
			}
			return hk, hv, nil
		})
		if err != nil {
			return nil, err
		}
		if pruned {
			if err := m.compact(ws, keep, []rowBuf{{ws.x, H}, {ws.q, QD}, {ws.k, KD}, {ws.v, KD}, {ws.cosT, half}, {ws.sinT, half}}); err != nil {
				return nil, err
			}
			if err := rows.Keep(seqs, l, keep); err != nil {
				return nil, err
			}
			pos, slot, spans = rows.Pos, rows.Slot, rows.Spans
			R = rows.Len()
			if err := uploadAsync(d, ws.pos.Ptr, pos); err != nil {
				return nil, err
			}
			if err := uploadAsync(d, ws.slot.Ptr, slot); err != nil {
				return nil, err
			}
		}
		for si := range seqs {
			sp := spans[si]
			n := sp.Hi - sp.Lo
			if n == 0 {
				continue
			}
			c := caches[si]
			for _, kv := range []struct{ dst, src Buffer }{{c.K[l], ws.k}, {c.V[l], ws.v}} {
				if err := d.flat("scatter_rows_f32", int64(n*KD), kv.dst, off(kv.src, sp.Lo*KD, 4), off(ws.slot, sp.Lo, 4), n, KD); err != nil {
					return nil, err
				}
			}
		}
		for si, s := range seqs {
			sp := spans[si]
			n := sp.Hi - sp.Lo
			if n == 0 {
				continue
			}
			if err := m.attention(ws, s, caches[si], groups[si], l, sp.Lo, n, scale); err != nil {
				return nil, fmt.Errorf("forward layer %d sequence %d: %w", l, si, err)
			}
		}
		steps = []func() error{
			func() error { return linear(ws.tmp, ws.att, L.wo, R, QD, H) },
			func() error { return d.flat("add_f32", int64(R*H), ws.x, ws.tmp, int64(R*H)) },
			func() error { return rmsnorm(ws.xn, ws.x, L.mlpNorm, R) },
			func() error { return linear(ws.gate, ws.xn, L.wgate, R, H, I) },
			func() error { return d.linear(ws.up.Ptr, ws.xb.Ptr, L.wup.Ptr, R, H, I) },
			func() error { return d.flat("silu_mul", int64(R*I), ws.gate, ws.up, int64(R*I)) },
			func() error { return linear(ws.tmp, ws.gate, L.wdown, R, I, H) },
			func() error { return d.flat("add_f32", int64(R*H), ws.x, ws.tmp, int64(R*H)) },
		}
		for _, st := range steps {
			if err := st(); err != nil {
				return nil, fmt.Errorf("forward layer %d: %w", l, err)
			}
		}
	}
	var want []int32
	for _, r := range rows.Wanted(seqs) {
		want = append(want, int32(r))
	}
	if len(want) == 0 {
		return outs, d.drv.check("cuStreamSynchronize", d.drv.cuStreamSynchronize(d.compute))
	}
	nw := len(want)
	if err := uploadAsync(d, ws.idx.Ptr, want); err != nil {
		return nil, err
	}
	if err := d.flat("gather_rows_f32", int64(nw*H), ws.hn, ws.x, ws.idx, nw, H); err != nil {
		return nil, err
	}
	if err := rmsnorm(ws.hn, ws.hn, m.norm, nw); err != nil {
		return nil, err
	}
	if err := linear(ws.logits, ws.hn, m.lmHead, nw, H, cfg.Vocab); err != nil {
		return nil, err
	}
	logits := make([]float32, nw*cfg.Vocab)
	if err := download(d, logits, ws.logits.Ptr); err != nil {
		return nil, err
	}
	model.SplitLogits(outs, seqs, logits, cfg.Vocab)
	return outs, nil
}

type rowBuf struct {
	b     Buffer
	width int
}

// compact keeps rows keep (ascending) of each buffer: gather into scratch, copy back.
func (m *Model) compact(ws *workspace, keep []int, bufs []rowBuf) error {
	d := m.dev
	idx := make([]int32, len(keep))
	for i, r := range keep {
		idx[i] = int32(r)
	}
	if err := uploadAsync(d, ws.idx.Ptr, idx); err != nil {
		return err
	}
	n := len(keep)
	for _, b := range bufs {
		if n == 0 {
			break
		}
		if err := d.flat("gather_rows_f32", int64(n*b.width), ws.scratch, b.b, ws.idx, n, b.width); err != nil {
			return err
		}
		if err := d.drv.check("cuMemcpyDtoDAsync", d.drv.cuMemcpyDtoDAsync(b.b.Ptr, ws.scratch.Ptr, uint64(n*b.width)*4, d.compute)); err != nil {
			return err
		}
	}
	return nil
}

// attention runs the fused kernel for rows [lo, lo+n) of one sequence over its
// cache, and the probability kernel when the sequence probes this layer.
func (m *Model) attention(ws *workspace, s *model.Seq, c *Cache, g *seqGroups, layer, lo, n int, scale float32) error {
	cfg := &m.Config
	d := m.dev
	slots := c.Len()
	var probs []float32
	if s.Probe != nil {
		probs = s.Probe(layer)
		if probs != nil && len(probs) != n*cfg.Heads*slots {
			return fmt.Errorf("probe buffer for layer %d has %d floats, want %d", layer, len(probs), n*cfg.Heads*slots)
		}
	}
	kernel, qpw, err := attnKernel(g)
	if err != nil {
		return err
	}
	var slotGroup, temp, lse Buffer
	nGroups := 1
	if g != nil {
		slotGroup, temp, lse, nGroups = g.slotGroup, g.temp, g.lseScale, g.n
	}
	var stats DevPtr
	if probs != nil {
		stats = ws.stats.Ptr
	}
	G := cfg.Heads / cfg.KVHeads
	qb := attnWarps * qpw
	blocks := (n*G + qb - 1) / qb
	shmem := attnShared(qb, cfg.HeadDim)
	if shmem > 48*1024 {
		if err := d.drv.check("cuFuncSetAttribute", d.drv.cuFuncSetAttribute(d.kern.fn[kernel], cuFuncAttrMaxDynShared, int32(shmem))); err != nil {
			return err
		}
	}
	QD := cfg.QDim()
	if err := d.launch(kernel, [3]uint32{uint32(blocks), uint32(cfg.KVHeads), 1}, [3]uint32{attnWarps * 32, 1, 1}, uint32(shmem),
		off(ws.att, lo*QD, 4), stats, off(ws.q, lo*QD, 4), off(ws.pos, lo, 4), n,
		c.K[layer], c.V[layer], c.pos, slots, slotGroup, temp, lse, nGroups,
		cfg.Heads, cfg.KVHeads, cfg.HeadDim, scale); err != nil {
		return err
	}
	if probs == nil {
		return nil
	}
	pb, err := d.alloc(uint64(len(probs)) * 4)
	if err != nil {
		return err
	}
	defer func() {
		d.drv.cuStreamSynchronize(d.compute)
		d.free(pb)
	}()
	if err := d.launch("attn_probs", [3]uint32{uint32(n * cfg.Heads), 1, 1}, [3]uint32{128, 1, 1}, 0,
		pb, stats, off(ws.q, lo*QD, 4), off(ws.pos, lo, 4), n, c.K[layer], c.pos, slots, slotGroup, temp, lse, nGroups,
		cfg.Heads, cfg.KVHeads, cfg.HeadDim, scale); err != nil {
		return err
	}
	return download(d, probs, pb.Ptr)
}

// Launch geometry of attention.cu; these must match its ATT_* macros and the
// template arguments of each attn_fwd_g* kernel.
const (
	attnWarps = 4
	attnBK    = 32
)

func attnKernel(g *seqGroups) (name string, queriesPerWarp int, err error) {
	switch {
	case g == nil || g.n <= 1:
		if g != nil {
			return "attn_fwd_g4", 2, nil // a single explicit group still has a temperature
		}
		return "attn_fwd_g1", 4, nil
	case g.n <= maxAttnGroups:
		return "attn_fwd_g4", 2, nil
	}
	return "", 0, fmt.Errorf("attention: %d slot groups, at most %d supported", g.n, maxAttnGroups)
}

// attnShared is the dynamic shared memory of attn_fwd_*: queries, a padded K
// tile, a V tile and the tile's slot positions and groups.
func attnShared(queriesPerBlock, headDim int) int {
	return 4 * (queriesPerBlock*headDim + attnBK*(headDim+1) + attnBK*headDim + 2*attnBK)
}
