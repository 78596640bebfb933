package eval

import (
	"context"
	"math"
	"slices"
	"testing"
)

func TestMultipleChoice(t *testing.T) {
	ctx := context.Background()
	for _, task := range []string{TaskNIAHSingle, TaskNIAHMultiKey, TaskVTDistractor, TaskMultiHop} {
		exs, err := Generate(ctx, Config{Task: task, N: 20, Seed: 4, ContextTokens: 512, ChunkTokens: 128})
		if err != nil {
			t.Fatal(err)
		}
		a, err := MultipleChoice(exs, 4, 9)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := MultipleChoice(exs, 4, 9)
		positions := map[int]bool{}
		for i, ce := range a {
			if len(ce.Choices) != 4 || ce.Choices[ce.Correct] != exs[i].Answers[0] || !slices.Equal(ce.Choices, b[i].Choices) {
				t.Fatalf("%s %d: choices %q correct %d, reference %q", task, i, ce.Choices, ce.Correct, exs[i].Answers)
			}
			seen := map[string]bool{}
			for j, c := range ce.Choices {
				if seen[c] || (j != ce.Correct && slices.Contains(exs[i].Answers, c)) {
					t.Fatalf("%s %d: choice %q repeated or also a reference (%q)", task, i, c, ce.Choices)
				}
				seen[c] = true
			}
			positions[ce.Correct] = true
		}
		if len(positions) < 3 {
			t.Errorf("%s: the right choice sits at only %d positions over 20 questions", task, len(positions))
		}
		// Distractor needles are offered first: they are in the context.
		if task == TaskNIAHMultiKey {
			for i, ce := range a {
				for _, nd := range exs[i].Needles {
					if nd.Role == RoleDistractor && !slices.Contains(ce.Choices, nd.Value) {
						t.Fatalf("%s %d: distractor value %q not offered (%q)", task, i, nd.Value, ce.Choices)
					}
				}
			}
		}
	}
	if _, err := MultipleChoice(nil, 1, 0); err == nil {
		t.Error("one choice accepted")
	}
}

func TestScoreLabelRun(t *testing.T) {
	exs := []ChoiceExample{
		{Example: Example{QueryID: "a"}, Choices: []string{"x", "y"}, Correct: 0},
		{Example: Example{QueryID: "b"}, Choices: []string{"x", "y"}, Correct: 1},
		{Example: Example{QueryID: "c"}, Choices: []string{"x", "y"}, Correct: 1},
		{Example: Example{QueryID: "d"}, Choices: []string{"x", "y"}, Correct: 0},
	}
	full := map[string]LabelAnswer{"a": {"x", []float64{0.9, 0.1}}, "b": {"y", []float64{0.2, 0.8}}, "c": {"x", []float64{0.6, 0.4}}, "d": {"x", []float64{0.7, 0.3}}}
	run := map[string]LabelAnswer{"a": {"x", []float64{0.8, 0.2}}, "b": {"x", []float64{0.7, 0.3}}, "c": {"x", []float64{0.5, 0.5}}} // d unanswered
	s := ScoreLabelRun(exs, run, full)
	if s.Accuracy != 25 || s.AgreeFull != 50 || math.Abs(s.ProbFull-(0.8+0.3+0.5)/4) > 1e-12 || s.Answered != 3 {
		t.Errorf("got %+v", s)
	}
	if f := ScoreLabelRun(exs, full, full); f.Accuracy != 75 || f.AgreeFull != 100 {
		t.Errorf("full against itself: %+v", f)
	}
	if n := ScoreLabelRun(exs, run, nil); !math.IsNaN(n.AgreeFull) || !math.IsNaN(n.ProbFull) {
		t.Errorf("without full: %+v", n)
	}
}
