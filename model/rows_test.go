package model

import (
	"slices"
	"strings"
	"testing"
)

func TestRowsPruneKeep(t *testing.T) {
	seqs := []*Seq{
		{Tokens: []int32{10, 11, 12, 13}, Pos: []int32{5, 6, 7, 8}, Slots: []int32{0, 1, 2, 3}, Logits: []int{3}},
		{Tokens: []int32{20, 21}, Pos: []int32{0, 1}, Slots: []int32{4, 5}, Logits: []int{1}},
	}
	var gotK []float32
	seqs[0].PruneLayer = 1
	seqs[0].Prune = func(layer int, rows []int, k, v []float32) []int {
		gotK = k
		if !slices.Equal(rows, []int{0, 1, 2, 3}) {
			t.Errorf("prune saw rows %v", rows)
		}
		return []int{1, 3}
	}
	b := NewRows(seqs)
	if b.Len() != 6 || b.Spans[1] != (Span{4, 6}) || !slices.Equal(b.Pos, []int32{5, 6, 7, 8, 0, 1}) {
		t.Fatalf("layout %+v", b)
	}
	kv := func(lo, hi int) ([]float32, []float32, error) {
		k := make([]float32, hi-lo)
		for i := range k {
			k[i] = float32(lo + i)
		}
		return k, k, nil
	}
	// Layer 0: no hook fires, every row stays.
	keep, pruned, err := b.Prune(seqs, 0, kv)
	if err != nil || pruned || !slices.Equal(keep, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("layer 0: keep %v pruned %v err %v", keep, pruned, err)
	}
	keep, pruned, err = b.Prune(seqs, 1, kv)
	if err != nil || !pruned || !slices.Equal(keep, []int{1, 3, 4, 5}) || !slices.Equal(gotK, []float32{0, 1, 2, 3}) {
		t.Fatalf("layer 1: keep %v pruned %v err %v k %v", keep, pruned, err, gotK)
	}
	if err := b.Keep(seqs, 1, keep); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Orig, []int{1, 3, 0, 1}) || !slices.Equal(b.Slot, []int32{1, 3, 4, 5}) || b.Spans[0] != (Span{0, 2}) || b.Spans[1] != (Span{2, 4}) {
		t.Fatalf("after keep %+v", b)
	}
	if w := b.Wanted(seqs); !slices.Equal(w, []int{1, 3}) {
		t.Errorf("wanted rows %v, want [1 3]", w)
	}

	for _, tc := range []struct {
		name string
		sel  []int
		want string
	}{
		{"unsorted", []int{2, 1}, "invalid row list"},
		{"out of range", []int{0, 9}, "invalid row list"},
		{"drops a logits row", []int{0, 1}, "dropped row 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := []*Seq{{Tokens: []int32{1, 2, 3, 4}, Pos: []int32{0, 1, 2, 3}, Slots: []int32{0, 1, 2, 3}, Logits: []int{3},
				Prune: func(int, []int, []float32, []float32) []int { return tc.sel }}}
			b := NewRows(s)
			keep, _, err := b.Prune(s, 0, kv)
			if err == nil {
				err = b.Keep(s, 0, keep)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
