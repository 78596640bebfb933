package jobs

import (
	"fmt"
	"strings"
	"testing"
)

func qsOf(chunks ...string) []Question {
	qs := make([]Question, len(chunks))
	for i, c := range chunks {
		qs[i] = Question{QueryID: fmt.Sprint(i), ChunkIDs: strings.Split(c, ",")}
	}
	return qs
}

func idsOf(qs []Question) string {
	var s []string
	for _, q := range qs {
		s = append(s, q.QueryID)
	}
	return strings.Join(s, " ")
}

func TestReorder(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"interleaved groups", []string{"a,b", "x,y", "a,c", "x,z", "b,a"}, "0 4 2 1 3"},
		{"no sharing keeps order", []string{"a", "b", "c", "d"}, "0 1 2 3"},
		{"best overlap first", []string{"a,b,c", "a", "d", "a,b,c"}, "0 3 1 2"},
		{"duplicate chunk in a row", []string{"a,a", "b", "a"}, "0 2 1"},
		{"two", []string{"x", "y"}, "0 1"},
	}
	for _, c := range cases {
		got := Reorder(qsOf(c.chunks...))
		if idsOf(got) != c.want {
			t.Errorf("%s: %s, want %s", c.name, idsOf(got), c.want)
		}
	}
	// Always a permutation, on a larger random-ish window.
	var chunks []string
	for i := 0; i < 500; i++ {
		chunks = append(chunks, fmt.Sprintf("c%d,c%d,c%d", i%17, i%29, i%7))
	}
	got := Reorder(qsOf(chunks...))
	seen := map[string]bool{}
	for _, q := range got {
		seen[q.QueryID] = true
	}
	if len(got) != 500 || len(seen) != 500 {
		t.Fatalf("not a permutation: %d items, %d distinct", len(got), len(seen))
	}
	// Locality improves: count adjacent pairs sharing a chunk.
	share := func(qs []Question) int {
		n := 0
		for i := 1; i < len(qs); i++ {
			set := map[string]bool{}
			for _, c := range qs[i-1].ChunkIDs {
				set[c] = true
			}
			for _, c := range qs[i].ChunkIDs {
				if set[c] {
					n++
					break
				}
			}
		}
		return n
	}
	if before, after := share(qsOf(chunks...)), share(got); after <= before {
		t.Errorf("adjacent sharing %d -> %d", before, after)
	}
}
