package model_test

import (
	"context"
	"math"
	"testing"

	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// TestQ8ActBatchPartners: under 8-bit activations (weights native-q8) a
// question decoded alone and the same question decoded in a batch of three
// give the same ids and the same logits bits at every step: the choice of
// 8-bit activations follows the decode step, not a product's row count, and
// each row is rounded on its own. The exact model's logits differ, so the
// 8-bit path did run.
func TestQ8ActBatchPartners(t *testing.T) {
	for _, spec := range testmodel.Variants()[:2] {
		t.Run(spec.Name, func(t *testing.T) {
			cpu, err := testmodel.Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			q8 := quantizeQ8Act(t, cpu).(*model.Model)
			exact := quantizeQ8(t, cpu).(*model.Model)
			prompts := [][]int32{{1, 17, 42, 5, 99}, {3, 8, 250, 7, 7, 61, 12}, {2, 200}}
			const steps = 12
			run := func(m *model.Model, qs []int) ([]*model.GenState, [][]float32) {
				var sts []*model.GenState
				for _, qi := range qs {
					ids := prompts[qi]
					c := m.HostCache(len(ids) + steps)
					first, _ := c.Alloc(len(ids))
					s := &model.Seq{Cache: c, Tokens: ids, Logits: []int{len(ids) - 1}}
					for i := range ids {
						s.Pos = append(s.Pos, int32(i))
						s.Slots = append(s.Slots, int32(first+i))
					}
					out, err := m.Forward(context.Background(), []*model.Seq{s})
					if err != nil {
						t.Fatal(err)
					}
					sts = append(sts, &model.GenState{Cache: c, NextPos: int32(len(ids)), Logits: out[0].Logits[0], Opts: model.GenOptions{MaxNewTokens: steps}})
				}
				if err := m.Generate(context.Background(), sts); err != nil {
					t.Fatal(err)
				}
				var last [][]float32
				for _, st := range sts {
					last = append(last, st.Logits)
				}
				return sts, last
			}
			alone, aloneLogits := run(q8, []int{0})
			batch, batchLogits := run(q8, []int{1, 0, 2})
			if len(alone[0].IDs) != steps || len(batch[1].IDs) != steps {
				t.Fatalf("decoded %d and %d tokens, want %d", len(alone[0].IDs), len(batch[1].IDs), steps)
			}
			for i, id := range alone[0].IDs {
				if batch[1].IDs[i] != id {
					t.Fatalf("step %d: %d in a batch of 3, %d alone", i, batch[1].IDs[i], id)
				}
			}
			for o, v := range aloneLogits[0] {
				if math.Float32bits(batchLogits[1][o]) != math.Float32bits(v) {
					t.Fatalf("last logits %d: %g in a batch of 3, %g alone", o, batchLogits[1][o], v)
				}
			}
			_, exactLogits := run(exact, []int{0})
			same := true
			for o, v := range exactLogits[0] {
				same = same && math.Float32bits(v) == math.Float32bits(aloneLogits[0][o])
			}
			if same {
				t.Fatal("8-bit activations gave the exact logits: the integer path did not run")
			}
		})
	}
}

// TestQ8ActMixedCall: a call holding a decode step and a prompt (8-bit
// weights) gives each the bits it gets in a call of its own — the decode
// step's 8-bit rows and the prompt's exact rows run apart (actRuns), in
// either order.
func TestQ8ActMixedCall(t *testing.T) {
	cpu, err := testmodel.Build(testmodel.Variants()[0])
	if err != nil {
		t.Fatal(err)
	}
	m := quantizeQ8Act(t, cpu).(*model.Model)
	ctx := context.Background()
	prompt := []int32{5, 9, 33, 2}
	seq := func(c *model.Cache, ids []int32, at int) *model.Seq {
		first, _ := c.Alloc(len(ids))
		s := &model.Seq{Cache: c, Tokens: ids, Logits: []int{len(ids) - 1}}
		for i := range ids {
			s.Pos = append(s.Pos, int32(at+i))
			s.Slots = append(s.Slots, int32(first+i))
		}
		return s
	}
	// decodeSeq is a cache holding the prompt and the one-token step after it.
	decodeSeq := func() *model.Seq {
		c := m.HostCache(8)
		if _, err := m.Forward(ctx, []*model.Seq{seq(c, prompt, 0)}); err != nil {
			t.Fatal(err)
		}
		d := seq(c, []int32{71}, len(prompt))
		d.Decode = true
		return d
	}
	other := []int32{4, 8, 15, 16, 23}
	alone, err := m.Forward(ctx, []*model.Seq{decodeSeq()})
	if err != nil {
		t.Fatal(err)
	}
	otherAlone, err := m.Forward(ctx, []*model.Seq{seq(m.HostCache(8), other, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, decodeFirst := range []bool{true, false} {
		d, o := decodeSeq(), seq(m.HostCache(8), other, 0)
		seqs, di, oi := []*model.Seq{d, o}, 0, 1
		if !decodeFirst {
			seqs, di, oi = []*model.Seq{o, d}, 1, 0
		}
		outs, err := m.Forward(ctx, seqs)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name      string
			got, want []float32
		}{{"decode step", outs[di].Logits[0], alone[0].Logits[0]}, {"prompt", outs[oi].Logits[0], otherAlone[0].Logits[0]}} {
			for i, v := range c.want {
				if math.Float32bits(c.got[i]) != math.Float32bits(v) {
					t.Fatalf("decode first %v: %s logit %d: %g in the mixed call, %g alone", decodeFirst, c.name, i, c.got[i], v)
				}
			}
		}
	}
}

// TestQ8ActPromptsStayExact: rows shaped like a decode step but not one — a
// one-token prompt, the one-token last piece of a chunked prefill (Append) —
// give the exact model's logits bit for bit under 8-bit weights: only
// Generate's steps (Seq.Decode) take 8-bit activations. A rule read off the
// shape (one token, one logits row) fails both cases.
func TestQ8ActPromptsStayExact(t *testing.T) {
	cpu, err := testmodel.Build(testmodel.Variants()[0])
	if err != nil {
		t.Fatal(err)
	}
	q8 := quantizeQ8Act(t, cpu).(*model.Model)
	exact := quantizeQ8(t, cpu).(*model.Model)
	ctx := context.Background()
	cases := []struct {
		name    string
		ids     []int32
		maxRows int
	}{
		{"one-token prompt", []int32{17}, 0},
		{"chunked prefill, last piece one token", []int32{5, 9, 33, 2, 71}, 4},
		{"chunked prefill, pieces of one token", []int32{5, 9, 33}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logits := func(m *model.Model) []float32 {
				out, err := model.Append(ctx, m, m.HostCache(len(c.ids)), c.ids, 0, c.maxRows, true)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			got, want := logits(q8), logits(exact)
			for i, v := range want {
				if math.Float32bits(got[i]) != math.Float32bits(v) {
					t.Fatalf("logit %d: %g with 8-bit weights, %g exact", i, got[i], v)
				}
			}
		})
	}
}
