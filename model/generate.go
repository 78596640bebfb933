package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// Sampling chooses the next token. The zero value is greedy decoding, which batch
// jobs use by default because it is deterministic.
type Sampling struct {
	Temperature float32 // <= 0: greedy
	TopK        int     // 0: off
	TopP        float32 // 0 or 1: off
	Seed        uint64
}

// Sampler draws tokens from logits under a Sampling policy.
type Sampler struct {
	s   Sampling
	rng *rand.Rand
	idx []int
	p   []float64
}

// NewSampler returns a sampler seeded from s.Seed.
func NewSampler(s Sampling) *Sampler {
	return &Sampler{s: s, rng: rand.New(rand.NewPCG(s.Seed, 0x9e3779b97f4a7c15))}
}

// Next picks a token id.
func (sm *Sampler) Next(logits []float32) int32 {
	if sm.s.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	n := len(logits)
	if cap(sm.idx) < n {
		sm.idx = make([]int, n)
		sm.p = make([]float64, n)
	}
	idx := sm.idx[:n]
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if k := sm.s.TopK; k > 0 && k < n {
		idx = idx[:k]
	}
	p := sm.p[:len(idx)]
	mx := float64(logits[idx[0]])
	var z float64
	for i, id := range idx {
		p[i] = math.Exp((float64(logits[id]) - mx) / float64(sm.s.Temperature))
		z += p[i]
	}
	if tp := float64(sm.s.TopP); tp > 0 && tp < 1 {
		var cum float64
		for i := range p {
			cum += p[i] / z
			if cum >= tp {
				idx, p = idx[:i+1], p[:i+1]
				break
			}
		}
		z = 0
		for _, v := range p {
			z += v
		}
	}
	u := sm.rng.Float64() * z
	for i, v := range p {
		u -= v
		if u <= 0 {
			return int32(idx[i])
		}
	}
	return int32(idx[len(idx)-1])
}

// Detokenizer turns ids into text; stop strings are matched on its output.
type Detokenizer interface {
	Decode(ids []int32) string
}

// GenOptions bounds and stops generation.
type GenOptions struct {
	MaxNewTokens int
	StopIDs      []int32 // EOS and end-of-turn ids
	StopStrings  []string
	Sampling     Sampling
}

// GenState is one sequence being decoded.
type GenState struct {
	Cache   KVCache
	NextPos int32     // position of the next token
	Logits  []float32 // logits that predict the next token
	Opts    GenOptions
	Tok     Detokenizer
	// Groups keeps APE's attention groups for the generated rows (nil: plain).
	// Its SlotGroup must cover every slot decoding will allocate.
	Groups *AttnGroups

	IDs     []int32
	Text    string
	Done    bool
	Reason  string // "eos", "stop", "length"
	sampler *Sampler
}

// Generate decodes every state to completion on the CPU (Decode).
func (m *Model) Generate(ctx context.Context, states []*GenState) error {
	return Decode(ctx, m, states)
}

// Decode decodes every state to completion on backend b, batching one row of
// each unfinished sequence per forward call so the weights are read once per
// step for all of them. It is every backend's Generate: sampling, stop ids and
// strings and the length limit are the same on each.
func Decode(ctx context.Context, b Backend, states []*GenState) error {
	maxPos := b.ModelConfig().MaxPos
	for _, st := range states {
		st.sampler = NewSampler(st.Opts.Sampling)
		if st.Opts.MaxNewTokens <= 0 {
			st.Done, st.Reason = true, "length"
		}
	}
	for {
		var seqs []*Seq
		var live []*GenState
		for _, st := range states {
			if st.Done {
				continue
			}
			tok := st.sampler.Next(st.Logits)
			st.IDs = append(st.IDs, tok)
			if containsID(st.Opts.StopIDs, tok) {
				st.IDs = st.IDs[:len(st.IDs)-1]
				st.Done, st.Reason = true, "eos"
			} else if st.Tok != nil && len(st.Opts.StopStrings) > 0 {
				text := st.Tok.Decode(st.IDs)
				for _, s := range st.Opts.StopStrings {
					if i := strings.Index(text, s); i >= 0 {
						st.Done, st.Reason = true, "stop"
						st.Text = text[:i]
						break
					}
				}
			}
			if !st.Done && len(st.IDs) >= st.Opts.MaxNewTokens {
				st.Done, st.Reason = true, "length"
			}
			if st.Done {
				continue
			}
			if int(st.NextPos) >= maxPos {
				st.Done, st.Reason = true, "length"
				continue
			}
			slot, err := st.Cache.Alloc(1)
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			seqs = append(seqs, &Seq{Cache: st.Cache, Tokens: []int32{tok}, Pos: []int32{st.NextPos}, Slots: []int32{int32(slot)}, Logits: []int{0}, Groups: st.Groups, Decode: true})
			live = append(live, st)
			st.NextPos++
		}
		if len(seqs) == 0 {
			break
		}
		outs, err := b.Forward(ctx, seqs)
		if err != nil {
			return fmt.Errorf("generate: %w", err)
		}
		for i, st := range live {
			st.Logits = outs[i].Logits[0]
		}
	}
	for _, st := range states {
		if st.Tok != nil && st.Reason != "stop" {
			st.Text = st.Tok.Decode(st.IDs)
		}
	}
	return nil
}

func containsID(ids []int32, id int32) bool {
	for _, v := range ids {
		if v == id {
			return true
		}
	}
	return false
}
