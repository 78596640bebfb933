package model

import (
	"fmt"
	"slices"
)

// Rows is the row bookkeeping of one Forward call, shared by every backend:
// the rows of all sequences side by side, each with its index in its
// sequence's Tokens, its position and its cache slot, and each sequence's span
// of rows. Selective recompute that decides at a layer (CacheBlend) shrinks it.
type Rows struct {
	Orig  []int // index into the row's sequence's Tokens
	Pos   []int32
	Slot  []int32
	Spans []Span // one per sequence
}

// Span is a sequence's rows, [Lo, Hi).
type Span struct{ Lo, Hi int }

// NewRows lays out the rows of seqs. Only Tokens, Pos, Slots, Logits and the
// Prune hook of a Seq are read, so a backend with its own cache type passes
// views holding those.
func NewRows(seqs []*Seq) *Rows {
	n := 0
	for _, s := range seqs {
		n += len(s.Tokens)
	}
	b := &Rows{Orig: make([]int, 0, n), Pos: make([]int32, 0, n), Slot: make([]int32, 0, n), Spans: make([]Span, len(seqs))}
	for si, s := range seqs {
		b.Spans[si].Lo = len(b.Pos)
		for i := range s.Tokens {
			b.Orig = append(b.Orig, i)
			b.Pos = append(b.Pos, s.Pos[i])
			b.Slot = append(b.Slot, s.Slots[i])
		}
		b.Spans[si].Hi = len(b.Pos)
	}
	return b
}

// Len is the number of active rows.
func (b *Rows) Len() int { return len(b.Orig) }

// Prune asks each sequence whose Prune hook fires at layer which of its rows
// stay; kv returns the fresh keys and values of rows [lo, hi) (a backend that
// keeps them elsewhere copies them out). keep lists the surviving rows as
// indices into the current rows; pruned is false when no hook fired, and then
// keep is every row.
func (b *Rows) Prune(seqs []*Seq, layer int, kv func(lo, hi int) (k, v []float32, err error)) (keep []int, pruned bool, err error) {
	keep = make([]int, 0, b.Len())
	for si, s := range seqs {
		sp := b.Spans[si]
		if s.Prune == nil || s.PruneLayer != layer {
			for r := sp.Lo; r < sp.Hi; r++ {
				keep = append(keep, r)
			}
			continue
		}
		k, v, err := kv(sp.Lo, sp.Hi)
		if err != nil {
			return nil, false, err
		}
		sel := s.Prune(layer, append([]int(nil), b.Orig[sp.Lo:sp.Hi]...), k, v)
		prev := -1
		for _, i := range sel {
			if i <= prev || i >= sp.Hi-sp.Lo {
				return nil, false, fmt.Errorf("forward: sequence %d: prune at layer %d returned an invalid row list", si, layer)
			}
			prev = i
			keep = append(keep, sp.Lo+i)
		}
		pruned = true
	}
	return keep, pruned, nil
}

// Keep shrinks the bookkeeping to the rows in keep (ascending, as Prune
// returns them) and checks that no row whose logits were asked for was dropped.
func (b *Rows) Keep(seqs []*Seq, layer int, keep []int) error {
	orig := make([]int, len(keep))
	pos := make([]int32, len(keep))
	slot := make([]int32, len(keep))
	j := 0
	for si := range seqs {
		lo := j
		for j < len(keep) && keep[j] < b.Spans[si].Hi {
			r := keep[j]
			orig[j], pos[j], slot[j] = b.Orig[r], b.Pos[r], b.Slot[r]
			j++
		}
		b.Spans[si] = Span{lo, j}
	}
	b.Orig, b.Pos, b.Slot = orig, pos, slot
	for si, s := range seqs {
		for _, want := range s.Logits {
			if b.row(si, want) < 0 {
				return fmt.Errorf("forward: sequence %d: prune at layer %d dropped row %d whose logits were asked for", si, layer, want)
			}
		}
	}
	return nil
}

// Needed lists the active rows whose last-layer output anything reads: the
// rows whose logits are asked for, and every row of a sequence with a Probe
// (its probabilities are of all its rows). fewer is false when that is every
// row.
func (b *Rows) Needed(seqs []*Seq) (keep []int, fewer bool) {
	for si, s := range seqs {
		sp := b.Spans[si]
		if s.Probe != nil {
			for r := sp.Lo; r < sp.Hi; r++ {
				keep = append(keep, r)
			}
			continue
		}
		at := len(keep)
		for _, w := range s.Logits {
			if r := b.row(si, w); r >= 0 {
				keep = append(keep, r)
			}
		}
		slices.Sort(keep[at:])
		keep = slices.Compact(keep)
	}
	return keep, len(keep) < b.Len()
}

// Wanted returns the active row of every Logits entry, sequence by sequence,
// in the order the entries are listed.
func (b *Rows) Wanted(seqs []*Seq) []int {
	var want []int
	for si, s := range seqs {
		for _, w := range s.Logits {
			if r := b.row(si, w); r >= 0 {
				want = append(want, r)
			}
		}
	}
	return want
}

// row is the active row holding token i of sequence si, or -1.
func (b *Rows) row(si, i int) int {
	sp := b.Spans[si]
	for r := sp.Lo; r < sp.Hi; r++ {
		if b.Orig[r] == i {
			return r
		}
	}
	return -1
}

// SplitLogits hands out logits, the rows of Wanted in order ([row][vocab]),
// to the sequences' outputs: outs[si].Logits[i] belongs to seqs[si].Logits[i].
// Each slice is capped at its row, so appending to one never spills into the
// next.
func SplitLogits(outs []Output, seqs []*Seq, logits []float32, vocab int) {
	j := 0
	for si, s := range seqs {
		outs[si].Logits = make([][]float32, len(s.Logits))
		for i := range s.Logits {
			outs[si].Logits[i] = logits[j*vocab : (j+1)*vocab : (j+1)*vocab]
			j++
		}
	}
}

// CheckSeqs validates every sequence of a forward call with check (the
// backend's own checks, which also resolve the sequence's cache to the
// backend's type) and returns the caches and the total number of rows. The
// error names the sequence.
func CheckSeqs[C any](seqs []*Seq, check func(*Seq) (C, error)) (caches []C, rows int, err error) {
	caches = make([]C, len(seqs))
	for si, s := range seqs {
		if caches[si], err = check(s); err != nil {
			return nil, 0, fmt.Errorf("forward: sequence %d: %w", si, err)
		}
		rows += len(s.Tokens)
	}
	return caches, rows, nil
}
