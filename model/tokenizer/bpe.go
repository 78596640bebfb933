package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// wordTok is one token of a word: its id and the byte where it ends, relative
// to the word's start.
type wordTok struct {
	id  int32
	end uint32
}

type mergeRes struct {
	rank int32
	id   int32
}

// bpeModel merges the symbols of one pre-token by rank, lowest first, as
// Hugging Face's BPE does. Symbols are ids, so byte-level and character-level
// vocabularies share the merge loop.
type bpeModel struct {
	vocab        map[string]int32 // in the file's alphabet
	merges       map[uint64]mergeRes
	byteLevel    bool
	byteID       [256]int32 // byte-level: the id of each byte's character
	byteStr      [256]string
	byteFallback bool
	fbID         [256]int32 // <0xNN> ids, -1 when missing
	unk          int32
	fuseUnk      bool
	ignoreMerges bool
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// mergeHeap is a binary min-heap ordered by (rank, pos).
type mergeItem struct {
	rank, pos, left, right int32
}

type mergeHeap []mergeItem

func (h mergeHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h *mergeHeap) push(it mergeItem) {
	*h = append(*h, it)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !a.less(i, p) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *mergeHeap) pop() mergeItem {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && a.less(l, m) {
			m = l
		}
		if r < n && a.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}

func (m *bpeModel) encodeWord(word string) ([]wordTok, error) {
	if m.ignoreMerges {
		key := word
		if m.byteLevel {
			var b strings.Builder
			for i := 0; i < len(word); i++ {
				b.WriteString(m.byteStr[word[i]])
			}
			key = b.String()
		}
		if id, ok := m.vocab[key]; ok {
			return []wordTok{{id, uint32(len(word))}}, nil
		}
	}
	ids := make([]int32, 0, len(word))
	ends := make([]uint32, 0, len(word))
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			id := m.byteID[word[i]]
			if id < 0 {
				if m.unk < 0 {
					return nil, fmt.Errorf("byte 0x%02x has no token and there is no unk_token", word[i])
				}
				id = m.unk
			}
			ids = append(ids, id)
			ends = append(ends, uint32(i+1))
		}
	} else {
		for i := 0; i < len(word); {
			_, n := utf8.DecodeRuneInString(word[i:])
			if id, ok := m.vocab[word[i:i+n]]; ok {
				ids = append(ids, id)
				ends = append(ends, uint32(i+n))
				i += n
				continue
			}
			if m.byteFallback {
				all := true
				for k := i; k < i+n; k++ {
					all = all && m.fbID[word[k]] >= 0
				}
				if all {
					for k := i; k < i+n; k++ {
						ids = append(ids, m.fbID[word[k]])
						ends = append(ends, uint32(k+1))
					}
					i += n
					continue
				}
			}
			if m.unk < 0 {
				return nil, fmt.Errorf("character %q has no token and there is no unk_token", word[i:i+n])
			}
			if m.fuseUnk && len(ids) > 0 && ids[len(ids)-1] == m.unk {
				ends[len(ends)-1] = uint32(i + n)
			} else {
				ids = append(ids, m.unk)
				ends = append(ends, uint32(i+n))
			}
			i += n
		}
	}
	n := len(ids)
	if n > 1 {
		next := make([]int32, n)
		prev := make([]int32, n)
		alive := make([]bool, n)
		for i := range n {
			next[i], prev[i], alive[i] = int32(i+1), int32(i-1), true
		}
		next[n-1] = -1
		h := make(mergeHeap, 0, n)
		for i := 0; i+1 < n; i++ {
			if r, ok := m.merges[pairKey(ids[i], ids[i+1])]; ok {
				h.push(mergeItem{r.rank, int32(i), ids[i], ids[i+1]})
			}
		}
		for len(h) > 0 {
			it := h.pop()
			p := it.pos
			q := next[p]
			// Skip entries made stale by an earlier merge.
			if !alive[p] || q < 0 || ids[p] != it.left || ids[q] != it.right {
				continue
			}
			r := m.merges[pairKey(it.left, it.right)]
			ids[p] = r.id
			ends[p] = ends[q]
			alive[q] = false
			next[p] = next[q]
			if next[q] >= 0 {
				prev[next[q]] = p
			}
			if pp := prev[p]; pp >= 0 {
				if r, ok := m.merges[pairKey(ids[pp], ids[p])]; ok {
					h.push(mergeItem{r.rank, pp, ids[pp], ids[p]})
				}
			}
			if nn := next[p]; nn >= 0 {
				if r, ok := m.merges[pairKey(ids[p], ids[nn])]; ok {
					h.push(mergeItem{r.rank, p, ids[p], ids[nn]})
				}
			}
		}
		out := make([]wordTok, 0, n)
		for i := int32(0); i >= 0; i = next[i] {
			out = append(out, wordTok{ids[i], ends[i]})
		}
		return out, nil
	}
	out := make([]wordTok, n)
	for i := range n {
		out[i] = wordTok{ids[i], ends[i]}
	}
	return out, nil
}

// byteAlphabet is GPT-2's reversible byte → printable rune mapping.
func byteAlphabet() [256]rune {
	var out [256]rune
	var used [256]bool
	for b := '!'; b <= '~'; b++ {
		used[b] = true
	}
	for b := 0xA1; b <= 0xAC; b++ {
		used[b] = true
	}
	for b := 0xAE; b <= 0xFF; b++ {
		used[b] = true
	}
	n := 0
	for b := range 256 {
		if used[b] {
			out[b] = rune(b)
		} else {
			out[b] = rune(256 + n)
			n++
		}
	}
	return out
}
