package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// llama2c encodes as llama2.c's run.c does: a dummy-prefix space, one symbol
// per UTF-8 character (bytes+3 when a character has no token), then merges of
// the adjacent pair whose concatenation has the highest score, leftmost first.
type llama2c struct {
	strs   []string
	scores []float32
	lookup map[string]int32
	space  int32
}

// LoadLlama2C reads a llama2.c tokenizer.bin: int32 max_token_length, then per
// token float32 score, int32 length and the bytes. vocabSize ≤ 0 reads every
// entry the file holds; otherwise exactly vocabSize entries must be there.
func LoadLlama2C(path string, vocabSize int) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("tokenizer %s: too short for the max_token_length header", path)
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 || maxLen > 1<<16 {
		return nil, fmt.Errorf("tokenizer %s: field max_token_length: implausible value %d", path, maxLen)
	}
	l := &llama2c{lookup: map[string]int32{}, space: -1}
	t := &Tokenizer{kind: kindLlama2C, path: path, byStr: map[string]int32{}, l2c: l, addBOS: true}
	off := 4
	for i := 0; vocabSize <= 0 || i < vocabSize; i++ {
		if off == len(data) && vocabSize <= 0 {
			break
		}
		if off+8 > len(data) {
			return nil, fmt.Errorf("tokenizer %s: token %d: file truncated at byte %d", path, i, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || n > maxLen || off+int(n) > len(data) {
			return nil, fmt.Errorf("tokenizer %s: token %d: length %d is negative, over max_token_length %d, or past the end", path, i, n, maxLen)
		}
		s := string(data[off : off+int(n)])
		off += int(n)
		id := int32(i)
		t.strs = append(t.strs, s)
		l.strs = append(l.strs, s)
		l.scores = append(l.scores, score)
		if _, dup := l.lookup[s]; !dup {
			l.lookup[s] = id
			t.byStr[s] = id
		}
		p := []byte(s)
		if len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
			if v, err := strconv.ParseUint(s[3:5], 16, 8); err == nil {
				p = []byte{byte(v)}
			}
		}
		t.pieces = append(t.pieces, p)
	}
	if len(t.strs) < 3+256 {
		return nil, fmt.Errorf("tokenizer %s: only %d tokens; llama2.c needs <unk>, BOS, EOS and 256 byte tokens", path, len(t.strs))
	}
	t.special = make([]bool, len(t.strs))
	t.spec = Special{Unk: 0, BOS: 1, EOS: 2, Pad: -1}
	t.special[1], t.special[2] = true, true
	if id, ok := l.lookup[" "]; ok {
		l.space = id
	}
	return t, nil
}

func (l *llama2c) encode(text string) (Encoding, error) {
	var enc Encoding
	if text == "" {
		return enc, nil
	}
	var ids []int32
	var spans [][2]int
	if l.space >= 0 {
		ids = append(ids, l.space)
		spans = append(spans, [2]int{0, 0})
	}
	for i := 0; i < len(text); {
		j := i + 1
		for j < len(text) && text[j]&0xC0 == 0x80 && j-i < 4 {
			j++
		}
		if id, ok := l.lookup[text[i:j]]; ok {
			ids = append(ids, id)
			spans = append(spans, [2]int{i, j})
		} else {
			for k := i; k < j; k++ {
				ids = append(ids, int32(text[k])+3)
				spans = append(spans, [2]int{i, j}) // a byte covers its character
			}
		}
		i = j
	}
	n := len(ids)
	next := make([]int32, n)
	prev := make([]int32, n)
	alive := make([]bool, n)
	for i := range n {
		next[i], prev[i], alive[i] = int32(i+1), int32(i-1), true
	}
	next[n-1] = -1
	// The heap orders by score descending, then position: run.c rescans for
	// the best pair each round and keeps the leftmost of equal scores.
	h := make(mergeHeap, 0, n)
	var buf []byte
	pairAt := func(p int32) {
		q := next[p]
		if q < 0 {
			return
		}
		buf = append(append(buf[:0], l.str(ids[p])...), l.str(ids[q])...)
		if id, ok := l.lookup[string(buf)]; ok {
			h.push(mergeItem{rank: scoreRank(l.scores[id]), pos: p, left: ids[p], right: ids[q]})
		}
	}
	for i := 0; i+1 < n; i++ {
		pairAt(int32(i))
	}
	for len(h) > 0 {
		it := h.pop()
		p := it.pos
		q := next[p]
		if !alive[p] || q < 0 || ids[p] != it.left || ids[q] != it.right {
			continue
		}
		buf = append(append(buf[:0], l.str(ids[p])...), l.str(ids[q])...)
		ids[p] = l.lookup[string(buf)]
		spans[p][1] = spans[q][1]
		alive[q] = false
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if pp := prev[p]; pp >= 0 {
			pairAt(pp)
		}
		pairAt(p)
	}
	for i := int32(0); i >= 0; i = next[i] {
		enc.IDs = append(enc.IDs, ids[i])
		enc.Offsets = append(enc.Offsets, spans[i])
	}
	return enc, nil
}

func (l *llama2c) str(id int32) string { return l.strs[id] }

// scoreRank maps a float32 score to an int32 that sorts ascending as the
// score descends (a total order matching float comparison for non-NaN values).
func scoreRank(f float32) int32 {
	u := math.Float32bits(f)
	var key uint32
	if u&0x80000000 != 0 {
		key = ^u
	} else {
		key = u | 0x80000000
	}
	// key ascends with f; we want ascending rank as f descends.
	return int32(^key ^ 0x80000000)
}
