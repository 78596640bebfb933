package eval

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// ChoiceExample is an Example in multiple-choice form, for label jobs: the
// model picks one of Choices, of which Choices[Correct] is a reference answer.
type ChoiceExample struct {
	Example
	Choices []string
	Correct int
}

// MultipleChoice turns examples into k-way multiple-choice ones. The right
// choice is the first reference answer; the wrong ones are first the values
// (or, for variable tracking, the variable names) of the example's distractor
// needles, which sit in the context and so are the hard alternatives, then
// fresh values of the same shape. The order is shuffled; the same examples,
// k and seed give the same choices.
func MultipleChoice(exs []Example, k int, seed uint64) ([]ChoiceExample, error) {
	if k < 2 {
		return nil, fmt.Errorf("eval: multiple choice with %d choices, want at least 2", k)
	}
	out := make([]ChoiceExample, 0, len(exs))
	words := Words()
	for _, ex := range exs {
		if len(ex.Answers) == 0 {
			return nil, fmt.Errorf("eval: example %s has no reference answer to offer as a choice", ex.QueryID)
		}
		h := fnv.New64a()
		h.Write([]byte(ex.QueryID))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		right := ex.Answers[0]
		used := map[string]bool{}
		for _, a := range ex.Answers {
			used[a] = true
		}
		choices := []string{right}
		add := func(s string) {
			if len(choices) < k && s != "" && !used[s] {
				used[s] = true
				choices = append(choices, s)
			}
		}
		for _, nd := range ex.Needles {
			if nd.Role == RoleDistractor {
				if IsVT(ex.Task) {
					add(nd.Key)
				} else {
					add(nd.Value)
				}
			}
		}
		for tries := 0; len(choices) < k; tries++ {
			if tries > 10000 {
				return nil, fmt.Errorf("eval: example %s: cannot draw %d distinct choices", ex.QueryID, k)
			}
			add(freshLike(rng, right, ex, words))
		}
		rng.Shuffle(len(choices), func(i, j int) { choices[i], choices[j] = choices[j], choices[i] })
		ce := ChoiceExample{Example: ex, Choices: choices}
		for i, c := range choices {
			if c == right {
				ce.Correct = i
			}
		}
		out = append(out, ce)
	}
	return out, nil
}

// freshLike draws a value of the same shape as the answer: a variable name, a
// word, a UUID fragment or a number with as many digits.
func freshLike(rng *rand.Rand, answer string, ex Example, words []string) string {
	switch {
	case IsVT(ex.Task):
		b := make([]byte, len(answer))
		for i := range b {
			b[i] = byte('A' + rng.IntN(26))
		}
		if strings.Contains(vtForbidden, strings.ToLower(string(b))) {
			return ""
		}
		return string(b)
	case ex.ValueType == ValueWords:
		return words[rng.IntN(len(words))]
	default:
		b := []byte(answer)
		for i, c := range b {
			switch {
			case c >= '0' && c <= '9':
				lo := 0
				if i == 0 {
					lo = 1
				}
				b[i] = byte('0' + lo + rng.IntN(10-lo))
			case c >= 'a' && c <= 'f':
				b[i] = "0123456789abcdef"[rng.IntN(16)]
			}
		}
		return string(b)
	}
}

// ChoiceRow is one row of a multiple-choice questions file: the job columns of
// a label job and the task, passed through to the output.
type ChoiceRow struct {
	QueryID  string   `parquet:"query_id"`
	Question string   `parquet:"question"`
	ChunkIDs []string `parquet:"chunk_ids,list"`
	Answers  []string `parquet:"answers,list"`
	Choices  []string `parquet:"choices,list"`
	Task     string   `parquet:"task"`
}

// WriteChoiceDataset writes the questions (with their choices) and corpus
// Parquet files for a label job over exs, each atomically.
func WriteChoiceDataset(ctx context.Context, questionsPath, corpusPath string, exs []ChoiceExample) error {
	plain := make([]Example, len(exs))
	for i := range exs {
		plain[i] = exs[i].Example
	}
	qs, cs := Rows(plain)
	rows := make([]ChoiceRow, len(exs))
	for i, q := range qs {
		rows[i] = ChoiceRow{QueryID: q.QueryID, Question: q.Question, ChunkIDs: q.ChunkIDs, Answers: q.Answers, Choices: exs[i].Choices, Task: q.Task}
	}
	if err := checkUniqueChunks(corpusPath, cs); err != nil {
		return err
	}
	if err := writeParquetAtomic(ctx, questionsPath, rows); err != nil {
		return err
	}
	return writeParquetAtomic(ctx, corpusPath, cs)
}
