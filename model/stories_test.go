package model

import (
	"encoding/json"
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
