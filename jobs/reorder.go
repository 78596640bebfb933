package jobs

// Reorder returns the questions of one window in an order where questions
// sharing chunks run next to each other, so a chunk's KV shard is loaded once
// and hit in cache by its neighbours. It is greedy: after each question it
// takes the not yet placed question sharing the most chunk ids with it
// (earliest on ties), else the earliest not yet placed. The result is a
// permutation of qs and depends only on qs. Output stays keyed by query_id,
// so the order of rows in part files carries no meaning.
func Reorder(qs []Question) []Question {
	if len(qs) < 3 {
		return qs
	}
	posting := map[string][]int{}
	for i := range qs {
		for _, c := range qs[i].ChunkIDs {
			if l := posting[c]; len(l) == 0 || l[len(l)-1] != i { // a chunk listed twice counts once
				posting[c] = append(l, i)
			}
		}
	}
	placed := make([]bool, len(qs))
	overlap := make([]int, len(qs))
	out := make([]Question, 0, len(qs))
	next := 0 // earliest not yet placed
	cur := 0
	for len(out) < len(qs) {
		placed[cur] = true
		out = append(out, qs[cur])
		var touched []int
		for _, c := range qs[cur].ChunkIDs {
			for _, j := range posting[c] {
				if !placed[j] {
					if overlap[j] == 0 {
						touched = append(touched, j)
					}
					overlap[j]++
				}
			}
		}
		best := -1
		for _, j := range touched {
			if best < 0 || overlap[j] > overlap[best] || (overlap[j] == overlap[best] && j < best) {
				best = j
			}
			overlap[j] = 0
		}
		for next < len(qs) && placed[next] {
			next++
		}
		if best < 0 {
			best = next
		}
		cur = best
		if len(out) < len(qs) && (cur >= len(qs) || placed[cur]) {
			cur = next
		}
	}
	return out
}
