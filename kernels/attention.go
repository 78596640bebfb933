package kernels

import (
	"fmt"
	"math"
	"unsafe"
)

// AttnSpec describes rows attending over cache slots. Slot j is visible to row i iff
// slotPos[j] >= 0 && slotPos[j] <= rowPos[i].
type AttnSpec struct {
	Heads, KVHeads, HeadDim int // query head h uses KV head h/(Heads/KVHeads)
	Scale                   float32
	// Optional slot groups (APE): SlotGroup[j] in [0,len(GroupTemp)). Within group g
	// the logits are scale·q·k/GroupTemp[g]; each group's softmax partial (out_g,
	// lse_g) is merged with weight exp(GroupLSEScale[g]·lse_g) / Σ_g' exp(GroupLSEScale[g']·lse_g').
	// With all temps and LSE scales 1 this is plain softmax attention. nil SlotGroup =
	// one group, temp 1, scale 1.
	SlotGroup     []uint8
	GroupTemp     []float32
	GroupLSEScale []float32
	// Probs, when non-nil (len rows·Heads·slots), receives the final attention
	// probabilities of each row and head over all slots (0 for invisible slots).
	Probs []float32
}

// Validate checks the spec against the buffer sizes Attention will be given, so
// that callers can turn a bad shape into an error instead of a panic.
func (s AttnSpec) Validate(out, q []float32, rows int, k, v []float32, slots int) error {
	if s.Heads <= 0 || s.KVHeads <= 0 || s.HeadDim <= 0 || s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("attention: bad heads %d / kv heads %d / head dim %d", s.Heads, s.KVHeads, s.HeadDim)
	}
	qd, kd := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	if len(q) < rows*qd || len(out) < rows*qd {
		return fmt.Errorf("attention: q has %d and out %d floats, want %d", len(q), len(out), rows*qd)
	}
	if len(k) < slots*kd || len(v) < slots*kd {
		return fmt.Errorf("attention: k has %d and v %d floats, want %d", len(k), len(v), slots*kd)
	}
	if s.SlotGroup != nil {
		if len(s.SlotGroup) < slots {
			return fmt.Errorf("attention: %d slot groups for %d slots", len(s.SlotGroup), slots)
		}
		if len(s.GroupLSEScale) != len(s.GroupTemp) {
			return fmt.Errorf("attention: %d group temperatures but %d LSE scales", len(s.GroupTemp), len(s.GroupLSEScale))
		}
		for j, g := range s.SlotGroup[:slots] {
			if int(g) >= len(s.GroupTemp) {
				return fmt.Errorf("attention: slot %d in group %d of %d", j, g, len(s.GroupTemp))
			}
		}
	}
	if s.Probs != nil && len(s.Probs) < rows*s.Heads*slots {
		return fmt.Errorf("attention: probs has %d floats, want %d", len(s.Probs), rows*s.Heads*slots)
	}
	return nil
}

const (
	// attnQueries is the target number of query vectors (rows × heads of one KV
	// head) processed together, so that each K/V tile read serves many of them.
	attnQueries = 96
	// attnSplitUnits: when a call has fewer (row block, KV head) units than this
	// many per worker (decode: one row, a few KV heads), each unit's slots are
	// split into ranges computed apart and merged by their softmax statistics,
	// so that every core has work however few KV heads the model has.
	attnSplitUnits = 4
	// rescaleSlack is how far (in logits) the online softmax lets a block's
	// maximum exceed the running one before it rescales; see fold.
	rescaleSlack = 8
	// negBig stands in for −Inf as the initial running maximum, so that
	// exp(logit − max) stays 0 (not NaN) for rows that have seen nothing yet.
	negBig = -1e30
)

// Attention: q is [rows][Heads·HeadDim], k and v are [slots][KVHeads·HeadDim], out is
// [rows][Heads·HeadDim]. It copies K into the blocked layout (KeyBlock) once per
// call and runs AttentionBlocked; a caller that keeps its keys blocked (the
// engine's cache) calls AttentionBlocked and copies nothing.
// A spec or buffer that fails AttnSpec.Validate is a programming error and panics;
// callers that take shapes from input should call Validate first.
func Attention(p *Pool, out, q []float32, rowPos []int32, k, v []float32, slotPos []int32, spec AttnSpec) {
	rows, slots := len(rowPos), len(slotPos)
	if rows == 0 {
		return
	}
	if err := spec.Validate(out, q, rows, k, v, slots); err != nil {
		panic("kernels: " + err.Error())
	}
	kd := spec.KVHeads * spec.HeadDim
	buf := p.getBuf(BlockedKeysLen(slots, kd))
	defer p.putBuf(buf)
	kb := *buf
	p.runDynamic((slots+KeyBlock-1)/KeyBlock, func(b int) {
		lo, hi := b*KeyBlock, min((b+1)*KeyBlock, slots)
		PutKeys(kb, lo, kd, k[lo*kd:hi*kd])
	})
	attention(p, out, q, rowPos, kb, v, slotPos, spec)
}

// AttentionBlocked is Attention over keys kept in the blocked layout (kb holds
// at least BlockedKeysLen(slots, KVHeads·HeadDim) floats; see KeyBlock) and
// values in the natural one. The logits never exist as a rows×slots matrix.
// Work units are (block of rows, KV head), handed to the workers dynamically. A
// unit holds the queries of all its heads (so each K/V tile read serves
// Heads/KVHeads heads) and walks the slots one key block at a time: the block's
// logits come from the matrix micro-kernel reading the keys in place, transposed
// (slot-major) so that the softmax bookkeeping runs as vector operations across
// queries, and O += P·V reuses the micro-kernel with P read in place and V
// copied once per call into contiguous per-block panels (prefill; decode, or
// rows that make one row block, read V in place, padded only when HeadDim is
// not a multiple of the micro-kernel width). Without slot groups or Probs this is a one-pass online softmax, and a
// call with few units (decode) also splits the slots of each unit into ranges
// merged by their (max, sum); with groups or Probs a first pass collects each
// group's log-sum-exp and a second produces final probabilities. Rows with no
// visible slot get zeros. Blocks no row of a unit can see (the causal upper
// triangle) are skipped, and a block on the diagonal stops at its last slot
// the unit can see.
func AttentionBlocked(p *Pool, out, q []float32, rowPos []int32, kb, v []float32, slotPos []int32, spec AttnSpec) {
	rows, slots := len(rowPos), len(slotPos)
	if rows == 0 {
		return
	}
	err := spec.Validate(out, q, rows, kb, v, slots)
	if n := BlockedKeysLen(slots, spec.KVHeads*spec.HeadDim); err == nil && len(kb) < n {
		err = fmt.Errorf("attention: blocked keys have %d floats, want %d", len(kb), n)
	}
	if err != nil {
		panic("kernels: " + err.Error())
	}
	attention(p, out, q, rowPos, kb, v, slotPos, spec)
}

func attention(p *Pool, out, q []float32, rowPos []int32, kb, v []float32, slotPos []int32, spec AttnSpec) {
	rows, slots := len(rowPos), len(slotPos)
	ks := p.Kernels()
	H, KV, D := spec.Heads, spec.KVHeads, spec.HeadDim
	G := H / KV
	nr := ks.nr
	const TS = KeyBlock
	tiles := (slots + TS - 1) / TS
	slotsP := tiles * TS
	Dp := (D + nr - 1) / nr * nr

	// Shared copy of V and per-tile position bounds (lowest valid, highest,
	// any empty slot). A call with many queries (prefill) copies V into
	// panels, [KV][tile][Dp/nr][KeyBlock][nr]: each P·V product then reads one
	// contiguous 12 KiB panel that stays in L1 across the query panels, where
	// V in place has rows KVHeads·HeadDim floats apart whose lines fall into a
	// few cache sets and evict each other. The copy is O(slots·KVHeads·HeadDim)
	// against the attention's O(rows·slots·Heads·HeadDim), so it is skipped for
	// few queries (decode), which read V in place, or padded to [KV][slotsP][Dp]
	// only when HeadDim is not a multiple of nr. It is skipped as well when
	// the rows make one row block (the auxiliary's question rows over its
	// assembled context: 32 rows, 3 query heads per KV head): each panel
	// would then be read by one unit only, and the copy cost more than the
	// in-place reads (CPU time per call, 2,080 slots, SmolLM2's heads, 32 /
	// 14 rows: panels 2.15 / 1.24 ms, in place 1.94 / 1.15 ms; two row
	// blocks, 64 rows over 4,160 slots: even).
	rb := max(1, attnQueries/G)
	panelV := rows*G >= 4*ks.mr && rows > rb
	packV := !panelV && D%nr != 0
	vpN := 0
	if panelV || packV {
		vpN = KV * slotsP * Dp
	}
	shared := p.getBuf(vpN + 3*tiles)
	defer p.putBuf(shared)
	vp := (*shared)[:vpN]
	var stat []int32
	if tiles > 0 {
		stat = unsafe.Slice((*int32)(unsafe.Pointer(&(*shared)[vpN])), 3*tiles)
	}
	tileStats(stat, slotPos)
	if panelV {
		p.runDynamic(KV*tiles, func(u int) {
			kh, t := u/tiles, u%tiles
			for cp := 0; cp < Dp/nr; cp++ {
				panel := vp[((kh*tiles+t)*(Dp/nr)+cp)*TS*nr:][:TS*nr]
				c0, c1 := cp*nr, min((cp+1)*nr, D)
				for j := 0; j < TS; j++ {
					dst := panel[j*nr : (j+1)*nr]
					s := t*TS + j
					if s >= slots {
						clear(dst)
						continue
					}
					copy(dst, v[s*KV*D+kh*D+c0:s*KV*D+kh*D+c1])
					clear(dst[c1-c0:])
				}
			}
		})
	}
	if packV {
		p.runDynamic(KV*tiles, func(u int) {
			kh, t := u/tiles, u%tiles
			for j := 0; j < TS; j++ {
				s := t*TS + j
				vrow := vp[(kh*slotsP+s)*Dp : (kh*slotsP+s+1)*Dp]
				if s >= slots {
					clear(vrow)
					continue
				}
				copy(vrow, v[s*KV*D+kh*D:s*KV*D+(kh+1)*D])
				clear(vrow[D:])
			}
		})
	}

	blocks := (rows + rb - 1) / rb
	units := blocks * KV
	at := attnCall{ks: ks, spec: &spec, out: out, q: q, slotPos: slotPos, kb: kb, vp: vp, stat: stat,
		G: G, tiles: tiles, slotsP: slotsP, Dp: Dp, v: v, packV: packV, panelV: panelV}
	splits := 1
	if spec.SlotGroup == nil && spec.Probs == nil && units < attnSplitUnits*p.Threads() {
		splits = min(tiles, (attnSplitUnits*p.Threads()+units-1)/units)
		// Whole rounds: with as many pieces per worker (SmolLM2's 3 KV heads
		// on 2 workers: 12 pieces, not 9) no worker runs a last piece alone
		// while the other waits.
		for splits < tiles && units*splits%p.Threads() != 0 {
			splits++
		}
	}
	if splits <= 1 {
		// Last row blocks first: in causal prefill they see the most slots,
		// and starting them first keeps both workers busy to the end.
		p.runDynamic(units, func(u int) {
			b, kh := blocks-1-u/KV, u%KV
			r0 := b * rb
			at.unit(p, rowPos[r0:min(r0+rb, rows)], r0, kh, 0, tiles, nil)
		})
		return
	}
	// Each split of a unit leaves its unnormalized output, running max and sum
	// ([M][D], [M], [M], M at most min(rb, rows)·G) in part; the merge rescales
	// them to the common max.
	pm := min(rb, rows) * G * (D + 2)
	partBuf := p.getBuf(units * splits * pm)
	defer p.putBuf(partBuf)
	part := *partBuf
	// A split call is decode's (few units): its two steps go to the pool's
	// team (runTeam), whose helpers are awake between a token's calls,
	// rather than to new goroutines that wake parked threads twice a layer.
	p.runTeam(units*splits, 1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			c, b, kh := u%splits, u/splits/KV, u/splits%KV
			r0 := b * rb
			at.unit(p, rowPos[r0:min(r0+rb, rows)], r0, kh, c*tiles/splits, (c+1)*tiles/splits, part[u*pm:(u+1)*pm])
		}
	})
	p.runTeam(units, 1, func(lo, hi int) {
		for bu := lo; bu < hi; bu++ {
			b, kh := bu/KV, bu%KV
			r0 := b * rb
			M := (min(r0+rb, rows) - r0) * G
			for m := 0; m < M; m++ {
				best := float32(negBig)
				for c := 0; c < splits; c++ {
					pc := part[(bu*splits+c)*pm:]
					if pc[M*D+M+m] != 0 {
						best = max(best, pc[M*D+m])
					}
				}
				r, h := m/G, kh*G+m%G
				dst := out[(r0+r)*H*D+h*D : (r0+r)*H*D+(h+1)*D]
				clear(dst)
				var sum float32
				for c := 0; c < splits; c++ {
					pc := part[(bu*splits+c)*pm:]
					if l := pc[M*D+M+m]; l != 0 {
						w := float32(math.Exp(float64(pc[M*D+m] - best)))
						sum += w * l
						ks.axpy(w, pc[m*D:(m+1)*D], dst)
					}
				}
				if sum != 0 {
					ks.scale(dst, 1/sum)
				}
			}
		}
	})
}

// tileStats writes, per key block of slotPos, its lowest valid position, its
// highest (-1: none) and whether it has an empty slot (stat: 3 per block).
func tileStats(stat, slotPos []int32) {
	const TS = KeyBlock
	for t := 0; t < len(stat)/3; t++ {
		lo, hi, neg := int32(math.MaxInt32), int32(-1), int32(0)
		for _, sp := range slotPos[t*TS : min((t+1)*TS, len(slotPos))] {
			if sp < 0 {
				neg = 1
				continue
			}
			lo, hi = min(lo, sp), max(hi, sp)
		}
		stat[3*t], stat[3*t+1], stat[3*t+2] = lo, hi, neg
	}
}

// attnCall is what every unit of one attention call shares.
type attnCall struct {
	ks               *Kernels
	spec             *AttnSpec
	out, q           []float32
	slotPos          []int32
	kb, vp, v        []float32
	packV, panelV    bool    // V copied padded, or into panels (see attention)
	stat             []int32 // per tile: lowest valid position, highest, any empty slot
	G, tiles, slotsP int
	Dp               int
}

// unit computes the queries of rows r0… (rowPos) and KV head kh over key blocks
// [t0, t1). With part nil it writes the final output; otherwise (one-pass only)
// part receives the unnormalized output, running max and sum ([M][D], [M], [M]).
func (a *attnCall) unit(p *Pool, rowPos []int32, r0, kh, t0, t1 int, part []float32) {
	ks, spec := a.ks, a.spec
	H, D, G, Dp := spec.Heads, spec.HeadDim, a.G, a.Dp
	const TS = KeyBlock
	mr, nr := ks.mr, ks.nr
	slots := len(a.slotPos)
	R := len(rowPos)
	M := R * G
	grouped := spec.SlotGroup != nil
	twoPass := grouped || spec.Probs != nil
	if !twoPass && M <= mr && KeyBlock%nr == 0 && !a.panelV {
		a.few(p, rowPos, r0, kh, t0, t1, part)
		return
	}
	// Sᵀ is computed in nr-query panels and O += P·V in mr-query panels; Mp covers
	// both (columns past M are never read back).
	Mp := max((M+nr-1)/nr*nr, (M+mr-1)/mr*mr)
	W := (M + 15) / 16 * 16
	nG := 1
	if grouped {
		nG = len(spec.GroupTemp)
	}

	// Scratch: Qᵀ [D][Mp], Sᵀ [TS][Mp], O [Mp][Dp], max, sum, tile max, junk [Mp],
	// per-group max, sum, offset [nG][Mp].
	sizes := [...]int{D * Mp, TS * Mp, Mp * Dp, Mp, Mp, Mp, Mp, nG * Mp, nG * Mp, nG * Mp}
	var parts [len(sizes)][]float32
	defer p.putBuf(p.getScratch(sizes[:], parts[:]))
	qt, st, o, mx, l, tmax, junk, gmx, gl, goff := parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7], parts[8], parts[9]

	minPos, maxPos := int32(math.MaxInt32), int32(-1)
	for _, rp := range rowPos {
		minPos, maxPos = min(minPos, rp), max(maxPos, rp)
	}
	// Qᵀ, scaled: written a row of Qᵀ at a time (contiguous), reading the
	// queries' column d; writing a query's column at a time instead strides
	// every store by Mp floats, which cost as much as three key blocks at 512
	// tokens.
	clear(qt)
	qoff := unsafe.Slice((*int32)(unsafe.Pointer(&tmax[0])), M) // tmax is free until the first fold
	for m := 0; m < M; m++ {
		qoff[m] = int32((r0+m/G)*H*D + (kh*G+m%G)*D)
	}
	qv, sc := a.q, spec.Scale
	for d := 0; d < D; d++ {
		row := qt[d*Mp : d*Mp+M]
		for m, off := range qoff {
			row[m] = qv[int(off)+d] * sc
		}
	}
	clear(o)
	clear(st) // columns no panel writes must hold numbers, not stale NaNs

	// scores fills Sᵀ rows [0,n) of tile t and reports whether the tile is live.
	scores := func(t int) (n int, live bool) {
		lo, hi, neg := a.stat[3*t], a.stat[3*t+1], a.stat[3*t+2] != 0
		if hi < 0 || lo > maxPos {
			return 0, false
		}
		t0 := t * TS
		n = min(TS, slots-t0)
		if hi > maxPos && spec.Probs == nil {
			// The tile reaches past every row of the unit (the causal
			// diagonal): the slots after its last visible one are skipped,
			// not computed and masked.
			for n > 0 && (a.slotPos[t0+n-1] < 0 || a.slotPos[t0+n-1] > maxPos) {
				n--
			}
		}
		kt := a.kb[(t*spec.KVHeads+kh)*D*TS:]
		for j0 := 0; j0 < n; j0 += mr {
			for m0 := 0; m0 < M; m0 += nr {
				ks.gemm(D, &kt[j0], TS, &qt[m0], Mp, &st[j0*Mp+m0], Mp, 0)
			}
		}
		if neg || hi > minPos {
			ninf := float32(math.Inf(-1))
			for j, sp := range a.slotPos[t0 : t0+n] {
				row := st[j*Mp : j*Mp+M]
				if sp < 0 {
					for m := range row {
						row[m] = ninf
					}
					continue
				}
				if sp <= minPos {
					continue
				}
				for r, rp := range rowPos {
					if sp > rp {
						for m := r * G; m < (r+1)*G; m++ {
							row[m] = ninf
						}
					}
				}
			}
		}
		if grouped {
			for j := 0; j < n; j++ {
				ks.scale(st[j*Mp:(j+1)*Mp], 1/spec.GroupTemp[spec.SlotGroup[t0+j]])
			}
		}
		return n, true
	}
	// runs calls fn for each maximal run [j0, j1) of slots of one group in tile t.
	runs := func(t, n int, fn func(j0, j1, g int)) {
		if !grouped {
			fn(0, n, 0)
			return
		}
		t0 := t * TS
		for j0 := 0; j0 < n; {
			g := spec.SlotGroup[t0+j0]
			j1 := j0 + 1
			for j1 < n && spec.SlotGroup[t0+j1] == g {
				j1++
			}
			fn(j0, j1, int(g))
			j0 = j1
		}
	}
	// fold merges rows [j0,j1) of Sᵀ into running (max, sum) and rescales the
	// accumulated output when scaleO; it leaves exp(s − max) in those rows.
	// It works on the first W columns (M rounded up to whole 16-column strips;
	// the padding columns are queries of zeros whose rows nobody reads).
	fold := func(j0, j1 int, mx, l []float32, scaleO bool) {
		copy(tmax[:W], st[j0*Mp:j0*Mp+W])
		ks.colMax(tmax[:W], st[(j0+1)*Mp:], Mp, j1-j0-1)
		for m := 0; m < W; m++ {
			// The running max moves only when a logit exceeds it by more than
			// rescaleSlack: the exponentials stay ≤ e^rescaleSlack (no overflow),
			// the result is the same (output and sum share the reference), and
			// the rescale of the accumulated output becomes rare.
			if tmax[m] > mx[m]+rescaleSlack {
				if l[m] != 0 {
					alpha := float32(math.Exp(float64(mx[m] - tmax[m])))
					l[m] *= alpha
					if scaleO {
						ks.scale(o[m*Dp:m*Dp+D], alpha)
					}
				}
				mx[m] = tmax[m]
			}
		}
		ks.expRows(st[j0*Mp:], Mp, j1-j0, mx[:W], l)
	}
	pv := func(t, n int) {
		if a.panelV {
			// One V panel at a time, kept in L1 across the query panels.
			for c0 := 0; c0 < Dp; c0 += nr {
				vt := a.vp[((kh*a.tiles+t)*(Dp/nr)+c0/nr)*TS*nr:]
				for m0 := 0; m0 < M; m0 += mr {
					ks.gemm(n, &st[m0], Mp, &vt[0], nr, &o[m0*Dp+c0], Dp, 1)
				}
			}
			return
		}
		vt, ldv := a.v[t*TS*spec.KVHeads*D+kh*D:], spec.KVHeads*D
		if a.packV {
			vt, ldv = a.vp[(kh*a.slotsP+t*TS)*Dp:], Dp
		}
		for m0 := 0; m0 < M; m0 += mr {
			for c0 := 0; c0 < Dp; c0 += nr {
				ks.gemm(n, &st[m0], Mp, &vt[c0], ldv, &o[m0*Dp+c0], Dp, 1)
			}
		}
	}

	if !twoPass {
		for m := range mx {
			mx[m], l[m] = negBig, 0
		}
		for t := t0; t < t1; t++ {
			n, live := scores(t)
			if !live {
				continue
			}
			fold(0, n, mx, l, true)
			pv(t, n)
		}
	} else {
		for i := range gmx {
			gmx[i], gl[i] = negBig, 0
		}
		for t := 0; t < a.tiles; t++ {
			n, live := scores(t)
			if !live {
				if spec.Probs != nil {
					// Live tiles write every probability of the unit's rows,
					// so only skipped tiles need zeros.
					t0 := t * TS
					n := min(TS, slots-t0)
					for m := 0; m < M; m++ {
						r, h := m/G, kh*G+m%G
						clear(spec.Probs[((r0+r)*H+h)*slots+t0 : ((r0+r)*H+h)*slots+t0+n])
					}
				}
				continue
			}
			runs(t, n, func(j0, j1, g int) { fold(j0, j1, gmx[g*Mp:(g+1)*Mp], gl[g*Mp:(g+1)*Mp], false) })
		}
		attnOffsets(gmx, gl, goff, M, Mp, nG, spec)
		for t := 0; t < a.tiles; t++ {
			n, live := scores(t)
			if !live {
				if spec.Probs != nil {
					// Live tiles write every probability of the unit's rows,
					// so only skipped tiles need zeros.
					t0 := t * TS
					n := min(TS, slots-t0)
					for m := 0; m < M; m++ {
						r, h := m/G, kh*G+m%G
						clear(spec.Probs[((r0+r)*H+h)*slots+t0 : ((r0+r)*H+h)*slots+t0+n])
					}
				}
				continue
			}
			runs(t, n, func(j0, j1, g int) {
				ks.expRows(st[j0*Mp:], Mp, j1-j0, goff[g*Mp:g*Mp+W], junk)
			})
			if spec.Probs != nil {
				t0 := t * TS
				for m := 0; m < M; m++ {
					r, h := m/G, kh*G+m%G
					pr := spec.Probs[((r0+r)*H+h)*slots+t0:]
					for j := 0; j < n; j++ {
						pr[j] = st[j*Mp+m]
					}
				}
			}
			pv(t, n)
		}
	}
	a.emit(o, mx, l, M, r0, kh, twoPass, part)
}

// emit writes a unit's M queries: the accumulated output o ([M][Dp]) divided by
// the sums l (final already when twoPass), or into part (see unit).
func (a *attnCall) emit(o, mx, l []float32, M, r0, kh int, twoPass bool, part []float32) {
	H, D, G, Dp := a.spec.Heads, a.spec.HeadDim, a.G, a.Dp
	if part != nil {
		for m := 0; m < M; m++ {
			copy(part[m*D:(m+1)*D], o[m*Dp:m*Dp+D])
		}
		copy(part[M*D:M*D+M], mx[:M])
		copy(part[M*D+M:M*D+2*M], l[:M])
		return
	}
	for m := 0; m < M; m++ {
		r, h := m/G, kh*G+m%G
		dst := a.out[(r0+r)*H*D+h*D : (r0+r)*H*D+(h+1)*D]
		om := o[m*Dp : m*Dp+D]
		switch {
		case twoPass:
			copy(dst, om)
		case l[m] == 0:
			clear(dst)
		default:
			copy(dst, om)
			a.ks.scale(dst, 1/l[m])
		}
	}
}

// few is unit for at most mr queries on the one-pass route (decode: one row of
// a few heads). The general unit puts the keys on the micro-kernel's mr side
// and the queries on its nr side, which a handful of queries fills to a
// fraction; here the queries take the mr side and the keys the nr side, read
// in place from the blocked layout (one head's block is [headDim][KeyBlock],
// slot-contiguous), so a block costs KeyBlock/nr products instead of
// KeyBlock/mr. The softmax runs along each query's row of logits, and P is
// transposed (at most mr × KeyBlock) for O += P·V.
func (a *attnCall) few(p *Pool, rowPos []int32, r0, kh, t0, t1 int, part []float32) {
	ks, spec := a.ks, a.spec
	H, D, G, Dp := spec.Heads, spec.HeadDim, a.G, a.Dp
	const TS = KeyBlock
	mr, nr := ks.mr, ks.nr
	slots := len(a.slotPos)
	M := len(rowPos) * G

	// Scratch: Qᵀ [D][mr], S [mr][TS], Pᵀ [TS][mr], O [mr][Dp], max, sum [mr].
	sizes := [...]int{D * mr, mr * TS, TS * mr, mr * Dp, mr, mr}
	var parts [len(sizes)][]float32
	defer p.putBuf(p.getScratch(sizes[:], parts[:]))
	qt, sc, pt, o, mx, l := parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]
	clear(qt)
	clear(pt) // columns past M feed output rows nobody reads: numbers, not stale NaNs
	clear(o)
	minPos, maxPos := int32(math.MaxInt32), int32(-1)
	for m := 0; m < M; m++ {
		r, h := m/G, kh*G+m%G
		minPos, maxPos = min(minPos, rowPos[r]), max(maxPos, rowPos[r])
		for d, x := range a.q[(r0+r)*H*D+h*D : (r0+r)*H*D+(h+1)*D] {
			qt[d*mr+m] = x * spec.Scale
		}
		mx[m], l[m] = negBig, 0
	}
	// The 4-row tile where the set has one: fmr rows per product, the
	// operands' strides unchanged.
	gemm, fmr := ks.gemm, mr
	if ks.gemm4 != nil {
		gemm, fmr = ks.gemm4, 4
	}
	ninf := float32(math.Inf(-1))
	for t := t0; t < t1; t++ {
		lo, hi, neg := a.stat[3*t], a.stat[3*t+1], a.stat[3*t+2] != 0
		if hi < 0 || lo > maxPos {
			continue
		}
		s0 := t * TS
		n := min(TS, slots-s0)
		kt := a.kb[(t*spec.KVHeads+kh)*D*TS:]
		// Only the sets with the 4-row kernels (the AVX-512 ones, where the
		// prefetch was measured) prefetch; a block the loop will skip
		// (nothing in it visible to these rows) is not fetched.
		if ks.gemm4Rows != nil && t+1 < t1 && a.stat[3*(t+1)+1] >= 0 && a.stat[3*(t+1)] <= maxPos {
			a.prefetchBlock(kh, t+1)
		}
		for m0 := 0; m0 < M; m0 += fmr {
			for j0 := 0; j0 < n; j0 += nr {
				gemm(D, &qt[m0], mr, &kt[j0], TS, &sc[m0*TS+j0], TS, 0)
			}
		}
		masked := neg || hi > minPos
		for m := 0; m < M; m++ {
			row := sc[m*TS : m*TS+n]
			if masked {
				rp := rowPos[m/G]
				for j, sp := range a.slotPos[s0 : s0+n] {
					if sp < 0 || sp > rp {
						row[j] = ninf
					}
				}
			}
			tm := rowMax(row)
			if tm > mx[m]+rescaleSlack { // see fold
				if l[m] != 0 {
					alpha := float32(math.Exp(float64(mx[m] - tm)))
					l[m] *= alpha
					ks.scale(o[m*Dp:m*Dp+D], alpha)
				}
				mx[m] = tm
			}
			l[m] += ks.expSub(row, mx[m])
		}
		vt, ldv := a.v[s0*spec.KVHeads*D+kh*D:], spec.KVHeads*D
		if a.packV {
			vt, ldv = a.vp[(kh*a.slotsP+s0)*Dp:], Dp
		}
		if ks.gemm4Rows != nil {
			// P read in place, a query's logits a row of sc.
			for m0 := 0; m0 < M; m0 += 4 {
				for c0 := 0; c0 < Dp; c0 += nr {
					ks.gemm4Rows(n, &sc[m0*TS], TS, &vt[c0], ldv, &o[m0*Dp+c0], Dp, 1)
				}
			}
			continue
		}
		// Pᵀ: slot-major, the left operand of O += P·V.
		for j := 0; j < n; j++ {
			pj := pt[j*mr : j*mr+M]
			for m := range pj {
				pj[m] = sc[m*TS+j]
			}
		}
		for m0 := 0; m0 < M; m0 += fmr {
			for c0 := 0; c0 < Dp; c0 += nr {
				gemm(n, &pt[m0], mr, &vt[c0], ldv, &o[m0*Dp+c0], Dp, 1)
			}
		}
	}
	a.emit(o, mx, l, M, r0, kh, false, part)
}

// prefetchBlock prefetches key block t of KV head kh and its value rows,
// which few reads next: a decode step's keys and values (f32, 90 MiB for
// SmolLM2 after 2,048 tokens) come from DRAM or L3, and each worker walks its
// slot range one block at a time, so without it every block's first reads
// wait on memory.
func (a *attnCall) prefetchBlock(kh, t int) {
	spec := a.spec
	D, TS := spec.HeadDim, KeyBlock
	s0 := t * TS
	n := min(TS, len(a.slotPos)-s0)
	prefetchRows(&a.kb[(t*spec.KVHeads+kh)*D*TS], 1, 0, 4*D*TS)
	if a.packV {
		prefetchRows(&a.vp[(kh*a.slotsP+s0)*a.Dp], 1, 0, 4*n*a.Dp)
		return
	}
	prefetchRows(&a.v[s0*spec.KVHeads*D+kh*D], n, 4*spec.KVHeads*D, 4*D)
}

// rowMax is the largest of x (len ≥ 1; −Inf stays −Inf), four comparisons at
// a time so that they do not wait on each other.
func rowMax(x []float32) float32 {
	a, b, c, d := x[0], x[0], x[0], x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		q := x[i : i+4 : i+4]
		if q[0] > a {
			a = q[0]
		}
		if q[1] > b {
			b = q[1]
		}
		if q[2] > c {
			c = q[2]
		}
		if q[3] > d {
			d = q[3]
		}
	}
	for ; i < len(x); i++ {
		if x[i] > a {
			a = x[i]
		}
	}
	return max(a, b, c, d)
}

// attnOffsets turns per-group running (max, sum) into −offset vectors such that
// exp(s − (−off)) is a logit's final probability: p = exp(s − lse_g)·w_g with
// w_g = exp(c_g·lse_g − Z), Z = log Σ_g exp(c_g·lse_g). Groups a query never saw
// get +1e30, which sends their exp to 0.
func attnOffsets(gmx, gl, goff []float32, M, Mp, nG int, spec *AttnSpec) {
	c := func(g int) float64 {
		if spec.SlotGroup == nil {
			return 1
		}
		return float64(spec.GroupLSEScale[g])
	}
	for m := 0; m < M; m++ {
		best := math.Inf(-1)
		for g := 0; g < nG; g++ {
			if gl[g*Mp+m] != 0 {
				lse := float64(gmx[g*Mp+m]) + math.Log(float64(gl[g*Mp+m]))
				best = max(best, c(g)*lse)
			}
		}
		var z float64
		for g := 0; g < nG; g++ {
			if gl[g*Mp+m] != 0 {
				lse := float64(gmx[g*Mp+m]) + math.Log(float64(gl[g*Mp+m]))
				z += math.Exp(c(g)*lse - best)
			}
		}
		logZ := best + math.Log(z)
		for g := 0; g < nG; g++ {
			i := g*Mp + m
			if gl[i] == 0 {
				goff[i] = -negBig
				continue
			}
			lse := float64(gmx[i]) + math.Log(float64(gl[i]))
			goff[i] = float32(-(c(g)*lse - lse - logZ))
		}
	}
	for i := M; i < Mp; i++ {
		for g := 0; g < nG; g++ {
			goff[g*Mp+i] = -negBig
		}
	}
}
