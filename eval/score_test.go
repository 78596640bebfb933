package eval

import (
	"math"
	"strings"
	"testing"
)

// Expected values below are worked by hand from RULER's definitions:
// string_match_all = mean over rows of (references found / references), ×100;
// string_match_part = mean over rows of (any reference found), ×100; case-insensitive.

func TestMatchRow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pred      string
		refs      []string
		all, part float64
	}{
		{"both found", "The special magic numbers are 12345 and 67890.", []string{"12345", "67890"}, 1, 1},
		{"one of two", "The special magic numbers are 12345.", []string{"12345", "67890"}, 0.5, 1},
		{"one of four", " ABC", []string{"ABC", "DEF", "GHI", "JKL"}, 0.25, 1},
		{"none", "I do not know.", []string{"12345"}, 0, 0},
		{"case-insensitive", "the value is WALRUS", []string{"walrus"}, 1, 1},
		{"reference case", "qxz, abc", []string{"QXZ", "ABC"}, 1, 1},
		{"substring counts, as in RULER", "1234567", []string{"2345"}, 1, 1},
		{"control characters become breaks", "12\x00345", []string{"12345"}, 0, 0},
		{"surrounding space ignored", "  \t 12345 \n", []string{"12345"}, 1, 1},
		{"no references", "anything", nil, 0, 0},
		{"empty prediction", "", []string{"a3f9-12c4"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchAll(tc.pred, tc.refs); got != tc.all {
				t.Errorf("MatchAll = %v, want %v", got, tc.all)
			}
			if got := MatchPart(tc.pred, tc.refs); got != tc.part {
				t.Errorf("MatchPart = %v, want %v", got, tc.part)
			}
		})
	}
}

func TestStringMatchOverRows(t *testing.T) {
	preds := []string{"12345 67890", "12345", "nothing", "a3f9-12c4"}
	refs := [][]string{{"12345", "67890"}, {"12345", "67890"}, {"11111"}, {"A3F9-12C4"}}
	// all: (1 + 0.5 + 0 + 1) / 4 = 0.625; part: (1 + 1 + 0 + 1) / 4 = 0.75.
	for _, tc := range []struct {
		metric string
		want   float64
	}{{MetricStringMatchAll, 62.5}, {MetricStringMatchPart, 75}} {
		got, err := Score(tc.metric, preds, refs)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", tc.metric, got, tc.want)
		}
	}
	if _, err := StringMatchAll(preds[:3], refs); err == nil || !strings.Contains(err.Error(), "4 reference lists") {
		t.Errorf("length mismatch: error %v", err)
	}
	if _, err := StringMatchPart(nil, nil); err == nil {
		t.Error("no rows: no error")
	}
	if _, err := Score("rouge", preds, refs); err == nil {
		t.Error("unknown metric: no error")
	}
}

func TestKLFromLogits(t *testing.T) {
	ninf := float32(math.Inf(-1))
	for _, tc := range []struct {
		name      string
		ref, test []float32
		want      float64
	}{
		{"identical", []float32{1, 2, 3}, []float32{1, 2, 3}, 0},
		{"shift-invariant", []float32{1, 2, 3}, []float32{11, 12, 13}, 0},
		// P = (1/2, 1/2), Q = (3/4, 1/4): ½ln(2/3) + ½ln(2) = ½ln(4/3).
		{"two tokens", []float32{0, 0}, []float32{float32(math.Log(3)), 0}, 0.5 * math.Log(4.0/3.0)},
		// P = (1, 0) with a masked token, Q = (1/2, 1/2): ln 2.
		{"masked reference token", []float32{0, ninf}, []float32{0, 0}, math.Log(2)},
		{"test rules out a possible token", []float32{0, 0}, []float32{0, ninf}, math.Inf(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := KLFromLogits(tc.ref, tc.test)
			if err != nil {
				t.Fatal(err)
			}
			if math.IsInf(tc.want, 1) {
				if !math.IsInf(got, 1) {
					t.Fatalf("KL = %v, want +Inf", got)
				}
				return
			}
			if math.Abs(got-tc.want) > 1e-6 {
				t.Fatalf("KL = %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []struct {
		name      string
		ref, test []float32
	}{
		{"sizes differ", []float32{1, 2}, []float32{1}},
		{"empty", nil, nil},
		{"NaN", []float32{float32(math.NaN()), 0}, []float32{0, 0}},
		{"+Inf", []float32{0, 0}, []float32{float32(math.Inf(1)), 0}},
		{"all masked", []float32{ninf, ninf}, []float32{0, 0}},
	} {
		if _, err := KLFromLogits(bad.ref, bad.test); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}

func TestGreedyAgreement(t *testing.T) {
	for _, tc := range []struct {
		name              string
		ref, test         []int32
		positional, prefx float64
	}{
		{"same", []int32{5, 6, 7, 1}, []int32{5, 6, 7, 1}, 1, 1},
		{"one differs", []int32{5, 6, 7, 1}, []int32{5, 6, 9, 1}, 0.75, 0.5},
		{"test stops early", []int32{5, 6, 7, 1}, []int32{5, 6}, 0.5, 0.5},
		{"test runs on", []int32{5, 1}, []int32{5, 1, 8, 8}, 1, 1},
		{"first differs", []int32{5, 6}, []int32{6, 6}, 0.5, 0},
		{"both empty", nil, nil, 1, 1},
		{"empty reference", nil, []int32{3}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GreedyAgreement(tc.ref, tc.test); got != tc.positional {
				t.Errorf("GreedyAgreement = %v, want %v", got, tc.positional)
			}
			if got := PrefixAgreement(tc.ref, tc.test); got != tc.prefx {
				t.Errorf("PrefixAgreement = %v, want %v", got, tc.prefx)
			}
		})
	}
}
