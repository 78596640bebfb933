package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"testing"
)

type storiesGolden struct {
	PromptIDs    []int32 `json:"prompt_ids"`
	PromptLogits []struct {
		Pos     int       `json:"pos"`
		Argmax  int       `json:"argmax"`
		First16 []float32 `json:"first16"`
		Sum     float64   `json:"sum"`
	} `json:"prompt_logits"`
	LastLogits []float32 `json:"last_logits"`
	GreedyIDs  []int32   `json:"greedy_ids"`
}

func loadStories(t testing.TB) (*Model, *storiesGolden) {
	t.Helper()
	m, err := LoadLlama2C("../testdata/stories260K/stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../testdata/stories260K/stories260K.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g storiesGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return m, &g
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

// TestStories260KGolden feeds the prompt one position at a time, exactly as
// llama2.c's run.c did for the golden, then decodes greedily.
func TestStories260KGolden(t *testing.T) {
	m, g := loadStories(t)
	ctx := context.Background()
	cache := m.HostCache(len(g.PromptIDs) + len(g.GreedyIDs))
	var logits []float32
	step := func(tok int32, pos int) []float32 {
		sl0, _ := cache.Alloc(1)
		sl := int32(sl0)
		out, err := m.Forward(ctx, []*Seq{{Cache: cache, Tokens: []int32{tok}, Pos: []int32{int32(pos)}, Slots: []int32{sl}, Logits: []int{0}}})
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Logits[0]
	}
	for pos, tok := range g.PromptIDs {
		logits = step(tok, pos)
		want := g.PromptLogits[pos]
		if got := argmax(logits); got != want.Argmax {
			t.Errorf("pos %d: argmax %d, llama2.c %d", pos, got, want.Argmax)
		}
		for i, w := range want.First16 {
			if !near(float64(logits[i]), float64(w), 1e-4) {
				t.Errorf("pos %d logit %d: %v, llama2.c %v", pos, i, logits[i], w)
			}
		}
		var sum float64
		for _, v := range logits {
			sum += float64(v)
		}
		if !near(sum, want.Sum, 1e-4) {
			t.Errorf("pos %d: logit sum %v, llama2.c %v", pos, sum, want.Sum)
		}
	}
	for i, w := range g.LastLogits {
		if math.Abs(float64(logits[i]-w)) > 1e-4 {
			t.Errorf("last logits[%d] = %v, llama2.c %v", i, logits[i], w)
		}
	}
	pos := len(g.PromptIDs)
	for i, want := range g.GreedyIDs {
		got := int32(argmax(logits))
		if got != want {
			t.Fatalf("greedy step %d: id %d, llama2.c %d", i, got, want)
		}
		logits = step(got, pos)
		pos++
	}
}
