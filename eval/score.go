package eval

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Metric names, as RULER calls them.
const (
	MetricStringMatchAll  = "string_match_all"
	MetricStringMatchPart = "string_match_part"
)

// postprocess mirrors RULER's cleanup of a prediction: control characters become newlines
// and surrounding space goes.
func postprocess(pred string) string {
	b := []rune(pred)
	for i, r := range b {
		if r < 0x20 {
			b[i] = '\n'
		}
	}
	return strings.TrimSpace(string(b))
}

// MatchAll is one row's string_match_all in [0, 1]: the share of references that occur in
// the prediction, case-insensitively. A row without references scores 0: it cannot be
// answered correctly, and a silent 1 would inflate a task's score.
func MatchAll(pred string, refs []string) float64 {
	if len(refs) == 0 {
		return 0
	}
	p := strings.ToLower(postprocess(pred))
	hit := 0
	for _, r := range refs {
		if strings.Contains(p, strings.ToLower(r)) {
			hit++
		}
	}
	return float64(hit) / float64(len(refs))
}

// MatchPart is one row's string_match_part in {0, 1}: whether any reference occurs.
func MatchPart(pred string, refs []string) float64 {
	p := strings.ToLower(postprocess(pred))
	for _, r := range refs {
		if strings.Contains(p, strings.ToLower(r)) {
			return 1
		}
	}
	return 0
}

// StringMatchAll is RULER's string_match_all over rows, ×100.
func StringMatchAll(preds []string, refs [][]string) (float64, error) {
	return mean100(preds, refs, MatchAll)
}

// StringMatchPart is RULER's string_match_part over rows, ×100.
func StringMatchPart(preds []string, refs [][]string) (float64, error) {
	return mean100(preds, refs, MatchPart)
}

// Score applies the named metric.
func Score(metric string, preds []string, refs [][]string) (float64, error) {
	switch metric {
	case MetricStringMatchAll:
		return StringMatchAll(preds, refs)
	case MetricStringMatchPart:
		return StringMatchPart(preds, refs)
	}
	return 0, fmt.Errorf("eval: unknown metric %q", metric)
}

func mean100(preds []string, refs [][]string, f func(string, []string) float64) (float64, error) {
	if len(preds) != len(refs) {
		return 0, fmt.Errorf("eval: %d predictions but %d reference lists", len(preds), len(refs))
	}
	if len(preds) == 0 {
		return 0, errors.New("eval: no rows to score")
	}
	s := 0.0
	for i := range preds {
		s += f(preds[i], refs[i])
	}
	return 100 * s / float64(len(preds)), nil
}

// logSoftmax returns log p over the logits, computed in float64 with the max subtracted.
func logSoftmax(logits []float32) ([]float64, error) {
	m := math.Inf(-1)
	for i, v := range logits {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 1) {
			return nil, fmt.Errorf("logit %d is %v", i, v)
		}
		m = math.Max(m, f)
	}
	if math.IsInf(m, -1) {
		return nil, errors.New("every logit is -Inf")
	}
	s := 0.0
	for _, v := range logits {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	out := make([]float64, len(logits))
	for i, v := range logits {
		out[i] = float64(v) - lse
	}
	return out, nil
}

// KLFromLogits is KL(P‖Q) in nats between the softmax distributions of ref (the `full`
// method's first-answer-token logits) and test (another method's). -Inf logits are allowed
// (masked tokens); a token possible under P but impossible under Q gives +Inf.
func KLFromLogits(ref, test []float32) (float64, error) {
	if len(ref) != len(test) {
		return 0, fmt.Errorf("eval: kl: vocab sizes differ (%d vs %d)", len(ref), len(test))
	}
	if len(ref) == 0 {
		return 0, errors.New("eval: kl: empty logits")
	}
	lp, err := logSoftmax(ref)
	if err != nil {
		return 0, fmt.Errorf("eval: kl: reference %w", err)
	}
	lq, err := logSoftmax(test)
	if err != nil {
		return 0, fmt.Errorf("eval: kl: test %w", err)
	}
	kl := 0.0
	for i := range lp {
		if math.IsInf(lp[i], -1) {
			continue
		}
		kl += math.Exp(lp[i]) * (lp[i] - lq[i])
	}
	// Rounding can leave a tiny negative value for identical distributions.
	return math.Max(kl, 0), nil
}

// GreedyAgreement is the share of the reference's greedy answer tokens that the test
// generation matches position by position; tokens the test never generated count as
// disagreeing, extra test tokens are ignored. An empty reference agrees only with an empty test.
func GreedyAgreement(ref, test []int32) float64 {
	if len(ref) == 0 {
		if len(test) == 0 {
			return 1
		}
		return 0
	}
	same := 0
	for i := range ref {
		if i < len(test) && test[i] == ref[i] {
			same++
		}
	}
	return float64(same) / float64(len(ref))
}

// PrefixAgreement is the length of the common prefix of the two greedy generations over the
// reference's length: after the first difference the test conditions on other tokens, so
// later matches say less.
func PrefixAgreement(ref, test []int32) float64 {
	if len(ref) == 0 {
		if len(test) == 0 {
			return 1
		}
		return 0
	}
	n := 0
	for n < len(ref) && n < len(test) && ref[n] == test[n] {
		n++
	}
	return float64(n) / float64(len(ref))
}
