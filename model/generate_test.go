package model

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// idText decodes ids as "<id>" strings so stop strings can be tested without a tokenizer.
type idText struct{}

func (idText) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "<%d>", id)
	}
	return b.String()
}

func prefillStories(t *testing.T, m *Model, ids []int32, extra int) *GenState {
	t.Helper()
	c := m.HostCache(len(ids) + extra)
	first, _ := c.Alloc(len(ids))
	s := &Seq{Cache: c, Tokens: ids, Logits: []int{len(ids) - 1}}
	for i := range ids {
		s.Pos = append(s.Pos, int32(i))
		s.Slots = append(s.Slots, int32(first+i))
	}
	out, err := m.Forward(context.Background(), []*Seq{s})
	if err != nil {
		t.Fatal(err)
	}
	return &GenState{Cache: c, NextPos: int32(len(ids)), Logits: out[0].Logits[0], Tok: idText{}}
}

func TestGenerateGreedyMatchesGolden(t *testing.T) {
	m, g := loadStories(t)
	// Two sequences decoded in one batch must each match the golden.
	a := prefillStories(t, m, g.PromptIDs, 200)
	b := prefillStories(t, m, g.PromptIDs, 200)
	a.Opts.MaxNewTokens = len(g.GreedyIDs)
	b.Opts.MaxNewTokens = 50
	if err := m.Generate(context.Background(), []*GenState{a, b}); err != nil {
		t.Fatal(err)
	}
	for i, want := range g.GreedyIDs {
		if a.IDs[i] != want {
			t.Fatalf("batched greedy step %d: %d, llama2.c %d", i, a.IDs[i], want)
		}
	}
	if len(b.IDs) != 50 || b.Reason != "length" {
		t.Fatalf("max_new_tokens: got %d tokens, reason %s", len(b.IDs), b.Reason)
	}
	for i := range b.IDs {
		if b.IDs[i] != g.GreedyIDs[i] {
			t.Fatalf("second sequence step %d differs", i)
		}
	}
}

func TestGenerateStopsAndSampling(t *testing.T) {
	m, g := loadStories(t)
	cases := []struct {
		name  string
		opts  GenOptions
		check func(t *testing.T, st *GenState)
	}{
		{"eos id", GenOptions{MaxNewTokens: 100, StopIDs: []int32{g.GreedyIDs[5]}}, func(t *testing.T, st *GenState) {
			if st.Reason != "eos" || len(st.IDs) != 5 {
				t.Errorf("stop id: reason %s after %d tokens, want eos after 5", st.Reason, len(st.IDs))
			}
		}},
		{"stop string", GenOptions{MaxNewTokens: 100, StopStrings: []string{fmt.Sprintf("<%d><%d>", g.GreedyIDs[3], g.GreedyIDs[4])}}, func(t *testing.T, st *GenState) {
			want := idText{}.Decode(g.GreedyIDs[:3])
			if st.Reason != "stop" || st.Text != want {
				t.Errorf("stop string: reason %s text %q, want stop %q", st.Reason, st.Text, want)
			}
		}},
		{"top-k 1 is greedy", GenOptions{MaxNewTokens: 20, Sampling: Sampling{Temperature: 1.5, TopK: 1, Seed: 3}}, func(t *testing.T, st *GenState) {
			for i := range st.IDs {
				if st.IDs[i] != g.GreedyIDs[i] {
					t.Fatalf("top-k 1 step %d: %d, greedy %d", i, st.IDs[i], g.GreedyIDs[i])
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := prefillStories(t, m, g.PromptIDs, 120)
			st.Opts = tc.opts
			if err := m.Generate(context.Background(), []*GenState{st}); err != nil {
				t.Fatal(err)
			}
			tc.check(t, st)
		})
	}
	// Same seed, same sample; different seed, (almost surely) different sample.
	sample := func(seed uint64) []int32 {
		st := prefillStories(t, m, g.PromptIDs, 60)
		st.Opts = GenOptions{MaxNewTokens: 40, Sampling: Sampling{Temperature: 1.2, TopP: 0.95, Seed: seed}}
		if err := m.Generate(context.Background(), []*GenState{st}); err != nil {
			t.Fatal(err)
		}
		return st.IDs
	}
	a, b, c := sample(1), sample(1), sample(2)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("same seed gave different samples")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Error("different seeds gave identical 40-token samples")
	}
}
