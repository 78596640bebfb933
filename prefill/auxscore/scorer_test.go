package auxscore

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"cacheclip/kernels"
	"cacheclip/methods"
	"cacheclip/model"
	"cacheclip/model/testmodel"
	"cacheclip/prefill"
	"cacheclip/prefill/prefilltest"
)

var query = prefill.Query{
	Chunks: []string{
		"The grass is green and the sky is blue over the little village.",
		"One of the special magic numbers for the key is 7319, remember it.",
		"Retrieval augmented generation reuses the cache of every chunk.",
	},
	Question: "What is the special magic number?",
}

func build(t *testing.T, name string) *model.Model {
	t.Helper()
	for _, s := range testmodel.Variants() {
		if s.Name == name {
			m, err := testmodel.Build(s)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no variant %q", name)
	return nil
}

// qModel is the model cut before its last layer, with that layer's input norm as
// the final norm and its query projection as the head: its "logits" are the last
// layer's queries before bias and rotation. It recomputes Q without the probe.
func qModel(t *testing.T, m *model.Model) *model.Model {
	t.Helper()
	cfg := m.Config
	L := &m.W.Layers[cfg.Layers-1]
	cfg.Layers--
	head := kernels.Mat{DType: kernels.F32, Rows: cfg.Vocab, Cols: cfg.Hidden, F32: make([]float32, cfg.Vocab*cfg.Hidden)}
	for r := 0; r < L.Wq.Rows; r++ {
		L.Wq.RowF32(r, head.F32[r*cfg.Hidden:(r+1)*cfg.Hidden])
	}
	w := model.Weights{Embed: m.W.Embed, Layers: m.W.Layers[:cfg.Layers], Norm: L.AttnNorm, LMHead: head}
	qm, err := model.FromWeights(&cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	return qm
}

// The probed attention equals softmax(q·kᵀ/√d) over the visible slots, computed
// here from the cache's last-layer keys and independently recomputed queries.
func TestAttentionMatchesReference(t *testing.T) {
	for _, v := range []string{"qwen2", "llama3", "llama2"} {
		t.Run(v, func(t *testing.T) {
			m := build(t, v)
			lay, err := prefilltest.Layouter{Width: 1}.Layout(query.Chunks, query.Question)
			if err != nil {
				t.Fatal(err)
			}
			s := &Scorer{Model: m, Layouter: prefilltest.Layouter{Width: 1}}
			probs, cache, err := s.attend(context.Background(), lay)
			if err != nil {
				t.Fatal(err)
			}
			cfg := m.Config
			H, KV, D := cfg.Heads, cfg.KVHeads, cfg.HeadDim
			total := lay.Len()
			nq := len(lay.Question.IDs)
			qStart := total - nq

			qm := qModel(t, m)
			c := qm.HostCache(total)
			c.Alloc(total)
			seq := &model.Seq{Cache: c}
			var toks []int32
			toks = append(toks, lay.Prefix.IDs...)
			for _, ch := range lay.Chunks {
				toks = append(toks, ch.IDs...)
			}
			toks = append(toks, lay.Question.IDs...)
			for i, tk := range toks {
				seq.Tokens, seq.Pos, seq.Slots = append(seq.Tokens, tk), append(seq.Pos, int32(i)), append(seq.Slots, int32(i))
				if i >= qStart {
					seq.Logits = append(seq.Logits, i)
				}
			}
			out, err := qm.Forward(context.Background(), []*model.Seq{seq})
			if err != nil {
				t.Fatal(err)
			}
			inv := cfg.InvFreq()
			K, _, err := cache.ReadKV(cfg.Layers-1, 0, cache.Len())
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			for r := 0; r < nq; r++ {
				q := append([]float32(nil), out[0].Logits[r][:H*D]...)
				bq := m.W.Layers[cfg.Layers-1].Bq
				pos := float64(qStart + r)
				for h := 0; h < H; h++ {
					v := q[h*D : (h+1)*D]
					for i := 0; i < D/2; i++ {
						a, b := v[i], v[i+D/2]
						if bq != nil {
							a += bq[h*D+i]
							b += bq[h*D+i+D/2]
						}
						sn, cs := math.Sincos(pos * inv[i])
						v[i] = float32(float64(a)*cs - float64(b)*sn)
						v[i+D/2] = float32(float64(b)*cs + float64(a)*sn)
					}
					kh := h / (H / KV)
					logit := make([]float64, qStart+r+1)
					mx := math.Inf(-1)
					for j := range logit {
						var dot float64
						for d := 0; d < D; d++ {
							dot += float64(v[d]) * float64(K[j*KV*D+kh*D+d])
						}
						logit[j] = dot / math.Sqrt(float64(D))
						mx = math.Max(mx, logit[j])
					}
					var z float64
					for j := range logit {
						logit[j] = math.Exp(logit[j] - mx)
						z += logit[j]
					}
					got := probs[(r*H+h)*total : (r*H+h+1)*total]
					for j := 0; j < total; j++ {
						want := 0.0
						if j < len(logit) {
							want = logit[j] / z
						}
						worst = math.Max(worst, math.Abs(float64(got[j])-want))
					}
				}
			}
			if worst > 2e-5 {
				t.Fatalf("probed attention differs from the reference by %.3g", worst)
			}
		})
	}
}

func TestScoresReductions(t *testing.T) {
	m := build(t, "llama2")
	lay, _ := prefilltest.Layouter{Width: 1}.Layout(query.Chunks, query.Question)
	s := &Scorer{Model: m, Layouter: prefilltest.Layouter{Width: 1}}
	probs, cache, err := s.attend(context.Background(), lay)
	if err != nil {
		t.Fatal(err)
	}
	H, ns, nq, np := m.Config.Heads, cache.Len(), len(lay.Question.IDs), len(lay.Prefix.IDs)
	headMean := func(r, j int) float64 {
		var v float64
		for h := 0; h < H; h++ {
			v += float64(probs[(r*H+h)*ns+j])
		}
		return v / float64(H)
	}
	for _, red := range []string{Mean, Max, Last} {
		s.Opts = Options{Reduce: red}
		sc, err := s.Scores(context.Background(), lay)
		if err != nil {
			t.Fatal(err)
		}
		at := np
		for _, ch := range sc {
			for tk, got := range ch {
				var want float64
				switch red {
				case Mean:
					for r := 0; r < nq; r++ {
						want += headMean(r, at+tk) / float64(nq)
					}
				case Max:
					for r := 0; r < nq; r++ {
						want = math.Max(want, headMean(r, at+tk))
					}
				case Last:
					want = headMean(nq-1, at+tk)
				}
				if math.Abs(float64(got)-want) > 1e-6 {
					t.Fatalf("%s: token %d scores %v, want %v", red, at+tk, got, want)
				}
			}
			at += len(ch)
		}
	}
	s.Opts = Options{Reduce: "median"}
	if _, err := s.Scores(context.Background(), lay); err == nil {
		t.Fatal("unknown reduction accepted")
	}
}

// Scores reach the primary's tokens through byte offsets when the tokenizers
// differ: each primary token takes the largest score of the auxiliary tokens it
// overlaps; P is never among the scored tokens.
func TestPrimaryScoresAcrossTokenizers(t *testing.T) {
	m := build(t, "smollm2")
	auxLay := prefilltest.Layouter{Width: 3, Shift: 5}
	s := &Scorer{Model: m, Layouter: auxLay}
	primary, _ := prefilltest.Layouter{Width: 2}.Layout(query.Chunks, query.Question)
	got, err := s.PrimaryScores(context.Background(), query, primary)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != primary.ContextTokens() {
		t.Fatalf("%d scores for %d primary context tokens", len(got), primary.ContextTokens())
	}
	al, _ := auxLay.Layout(query.Chunks, query.Question)
	per, err := s.Scores(context.Background(), al)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for c, ch := range primary.Chunks {
		for _, o := range ch.Offsets {
			var want float32
			for k, a := range al.Chunks[c].Offsets {
				if max(a[0], o[0]) < min(a[1], o[1]) {
					want = max(want, per[c][k])
				}
			}
			if got[i] != want {
				t.Fatalf("primary token %d [%d,%d) of chunk %d scores %v, want %v", i, o[0], o[1], c, got[i], want)
			}
			i++
		}
	}
	sel, err := s.Select(context.Background(), query, primary, 10)
	if err != nil || len(sel) != 10 {
		t.Fatalf("selection %v, %v", sel, err)
	}
	// A layout whose chunk text differs cannot be mapped.
	bad := primary
	bad.Chunks = append([]prefill.Segment(nil), primary.Chunks...)
	bad.Chunks[0] = prefilltest.Layouter{Width: 2}.Segment("something else\n\n")
	if _, err := s.PrimaryScores(context.Background(), query, bad); err == nil || !strings.Contains(err.Error(), "cannot be mapped") {
		t.Fatalf("error %v for a chunk the auxiliary reads differently", err)
	}
}

// The cheaper mode assembles the auxiliary context from its own per-chunk caches.
// Over one chunk that is exactly the full auxiliary prefill; over several, the
// selections overlap partly; both are reported.
func TestCheapModeAgainstFullPrefill(t *testing.T) {
	m := build(t, "smollm2")
	lay := prefilltest.Layouter{Width: 2}
	full := &Scorer{Model: m, Layouter: lay}
	cheap := &Scorer{Model: m, Layouter: lay, Source: prefill.NewMemorySource(&prefill.Computer{Model: m})}
	ctx := context.Background()
	one := prefill.Query{Chunks: query.Chunks[1:2], Question: query.Question}
	primary, _ := prefilltest.Layouter{Width: 1}.Layout(one.Chunks, one.Question)
	a, err := full.PrimaryScores(ctx, one, primary)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cheap.PrimaryScores(ctx, one, primary)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			t.Fatalf("one chunk: token %d scores %v cheap, %v full", i, b[i], a[i])
		}
	}
	primary, _ = prefilltest.Layouter{Width: 1}.Layout(query.Chunks, query.Question)
	for _, r := range []float64{0.1, 0.2, 0.4} {
		budget := methods.Budget(r, primary.ContextTokens())
		sf, err := full.Select(ctx, query, primary, budget)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := cheap.Select(ctx, query, primary, budget)
		if err != nil {
			t.Fatal(err)
		}
		j := Jaccard(sf, sc)
		t.Logf("r=%.1f: cheap vs full auxiliary selection Jaccard %.2f (%d tokens)", r, j, budget)
		if j <= 0 || j > 1 || len(sc) != budget {
			t.Errorf("r=%.1f: Jaccard %v, %d selected", r, j, len(sc))
		}
	}
	// Caches of another model are refused.
	other := build(t, "llama2")
	wrong := &Scorer{Model: m, Layouter: lay, Source: prefill.NewMemorySource(&prefill.Computer{Model: other})}
	if _, err := wrong.PrimaryScores(ctx, query, primary); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("error %v for caches of another model", err)
	}
}

// The boundary mode recomputes the first tokens of chunks 1… over the assembled
// context. Chunk 1's recomputed rows see P, chunk 0 (computed after P, as in the
// full prefill) and themselves only, so their keys and values equal the full
// prefill's at every layer, while the next row of chunk 1 keeps its chunk-alone
// cache; a window as long as the chunks recomputes every row, and the scores
// are the full prefill's.
func TestBoundaryModeAgainstFullPrefill(t *testing.T) {
	m := build(t, "smollm2")
	lay := prefilltest.Layouter{Width: 2}
	ctx := context.Background()
	auxLay, err := lay.Layout(query.Chunks, query.Question)
	if err != nil {
		t.Fatal(err)
	}
	full := &Scorer{Model: m, Layouter: lay}
	_, fc, err := full.attend(ctx, auxLay)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Free()
	src := prefill.NewMemorySource(&prefill.Computer{Model: m})
	const w = 4
	bs := &Scorer{Model: m, Layouter: lay, Source: src, Boundary: w}
	_, bc, err := bs.attend(ctx, auxLay)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Free()
	c1 := len(auxLay.Prefix.IDs) + len(auxLay.Chunks[0].IDs)
	diff := func(layer, from, to int) float64 {
		k1, v1, err := fc.ReadKV(layer, from, to)
		if err != nil {
			t.Fatal(err)
		}
		k2, v2, err := bc.ReadKV(layer, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var d float64
		for i := range k1 {
			d = max(d, math.Abs(float64(k1[i]-k2[i])), math.Abs(float64(v1[i]-v2[i])))
		}
		return d
	}
	last := m.Config.Layers - 1
	for l := 0; l <= last; l++ {
		if d := diff(l, c1, c1+w); d > 1e-4 {
			t.Errorf("layer %d: chunk 1's recomputed rows differ from the full prefill's by %.3g", l, d)
		}
	}
	if d := diff(last, c1+w, c1+w+1); d < 1e-3 {
		t.Errorf("chunk 1's row %d, not recomputed, equals the full prefill's (difference %.3g): the chunk cache was not computed alone", w, d)
	}

	primary, _ := prefilltest.Layouter{Width: 1}.Layout(query.Chunks, query.Question)
	want, err := full.PrimaryScores(ctx, query, primary)
	if err != nil {
		t.Fatal(err)
	}
	longest := 0
	for _, c := range auxLay.Chunks {
		longest = max(longest, len(c.IDs))
	}
	for _, b := range []int{longest, longest + 7} {
		all := &Scorer{Model: m, Layouter: lay, Source: src, Boundary: b}
		got, err := all.PrimaryScores(ctx, query, primary)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("window %d: token %d scores %v, full prefill %v", b, i, got[i], want[i])
			}
		}
	}
	// A window shorter than the chunks changes the cheap mode's scores.
	cheap := &Scorer{Model: m, Layouter: lay, Source: src}
	cs, err := cheap.PrimaryScores(ctx, query, primary)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := bs.PrimaryScores(ctx, query, primary)
	if err != nil {
		t.Fatal(err)
	}
	var moved float64
	for i := range cs {
		moved = max(moved, math.Abs(float64(cs[i]-ws[i])))
	}
	if moved == 0 {
		t.Errorf("a boundary window of %d left the cached mode's scores unchanged", w)
	}
}

// The full auxiliary computes its context rows' last layer only as far as
// their keys and values (the question's attention is all the scorer reads):
// its scores and selections must equal, bit for bit, those of a prefill that
// runs every row through the whole last layer.
func TestFreshScoresSkipNothingRead(t *testing.T) {
	for _, name := range []string{"smollm2", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			m := build(t, name)
			ctx := context.Background()
			primary, _ := prefilltest.Layouter{Width: 1}.Layout(query.Chunks, query.Question)
			// FullChunkRows 7 also splits the context over several calls.
			for _, rows := range []int{0, 7} {
				got := &Scorer{Model: m, Layouter: prefilltest.Layouter{Width: 2}, FullChunkRows: rows}
				ref := &Scorer{Model: prefilltest.EveryRow{Backend: m}, Layouter: prefilltest.Layouter{Width: 2}, FullChunkRows: rows}
				a, err := got.PrimaryScores(ctx, query, primary)
				if err != nil {
					t.Fatal(err)
				}
				b, err := ref.PrimaryScores(ctx, query, primary)
				if err != nil {
					t.Fatal(err)
				}
				for i := range a {
					if a[i] != b[i] {
						t.Fatalf("rows %d: token %d scores %v, %v with every row computed", rows, i, a[i], b[i])
					}
				}
				for _, r := range []float64{0.1, 0.2, 0.4, 1} {
					budget := methods.Budget(r, primary.ContextTokens())
					sa, _ := got.SelectScores(a, budget)
					sb, _ := ref.SelectScores(b, budget)
					if !slices.Equal(sa, sb) {
						t.Fatalf("rows %d r=%.1f: selected %v, %v with every row computed", rows, r, sa, sb)
					}
				}
			}
		})
	}
}
