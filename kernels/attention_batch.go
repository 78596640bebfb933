package kernels

import (
	"fmt"
	"unsafe"
)

// AttnCall is one call of AttentionBlockedBatch: AttentionBlocked's
// arguments.
type AttnCall struct {
	Out, Q  []float32
	RowPos  []int32
	KB, V   []float32
	SlotPos []int32
	Spec    AttnSpec
}

// AttentionBlockedBatch computes AttentionBlocked for every call. A batched
// decode step attends once per sequence, each over its own cache, and one
// such call has a unit of work per KV head: too few for the workers, so alone
// it splits its slots into ranges computed apart and merged in a second
// hand-off — two hand-offs per sequence and layer, each waking the team and
// waiting for its slowest part. When the calls' units together give every
// worker attnSplitUnits of them and no call copies its values (decode reads
// them in place), the units of all calls go to the team in one hand-off, each
// over all of its slots, and nothing is merged. Otherwise the calls run one
// after another. The results are AttentionBlocked's up to the order in which
// the online softmax meets the slots (one range rather than several merged).
func AttentionBlockedBatch(p *Pool, calls []AttnCall) {
	ks := p.Kernels()
	for i := range calls {
		c := &calls[i]
		rows, slots := len(c.RowPos), len(c.SlotPos)
		if rows == 0 {
			continue
		}
		err := c.Spec.Validate(c.Out, c.Q, rows, c.KB, c.V, slots)
		if n := BlockedKeysLen(slots, c.Spec.KVHeads*c.Spec.HeadDim); err == nil && len(c.KB) < n {
			err = fmt.Errorf("attention: blocked keys have %d floats, want %d", len(c.KB), n)
		}
		if err != nil {
			panic(fmt.Sprintf("kernels: call %d: %v", i, err))
		}
	}
	together, units, tiles := attnBatchRoute(p.Threads(), ks, calls)
	if !together {
		for _, c := range calls {
			if len(c.RowPos) > 0 {
				attention(p, c.Out, c.Q, c.RowPos, c.KB, c.V, c.SlotPos, c.Spec)
			}
		}
		return
	}
	// Each call's per-block statistics (attention's stat) in one buffer,
	// and the units, (call, row block, KV head), in call order.
	buf := p.getBuf(3*tiles + 3*units)
	defer p.putBuf(buf)
	all := unsafe.Slice((*int32)(unsafe.Pointer(&(*buf)[0])), 3*tiles+3*units)
	stats, us := all[:3*tiles], all[3*tiles:]
	at := make([]attnCall, len(calls))
	t0, u := 0, 0
	for i := range calls {
		c := &calls[i]
		rows, slots := len(c.RowPos), len(c.SlotPos)
		if rows == 0 {
			continue
		}
		spec := &c.Spec
		nt := (slots + KeyBlock - 1) / KeyBlock
		stat := stats[3*t0 : 3*(t0+nt)]
		t0 += nt
		tileStats(stat, c.SlotPos)
		G := spec.Heads / spec.KVHeads
		at[i] = attnCall{ks: ks, spec: spec, out: c.Out, q: c.Q, slotPos: c.SlotPos, kb: c.KB, stat: stat,
			G: G, tiles: nt, slotsP: nt * KeyBlock, Dp: spec.HeadDim, v: c.V}
		rb := max(1, attnQueries/G)
		for r0 := 0; r0 < rows; r0 += rb {
			for kh := 0; kh < spec.KVHeads; kh++ {
				us[3*u], us[3*u+1], us[3*u+2] = int32(i), int32(r0), int32(kh)
				u++
			}
		}
	}
	p.runTeam(units, 1, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			i, r0, kh := int(us[3*u]), int(us[3*u+1]), int(us[3*u+2])
			a := &at[i]
			rb := max(1, attnQueries/a.G)
			rowPos := calls[i].RowPos
			a.unit(p, rowPos[r0:min(r0+rb, len(rowPos))], r0, kh, 0, a.tiles, nil)
		}
	})
}

// attnBatchRoute reports whether AttentionBlockedBatch hands the units of
// all calls to the team at once (together) over threads workers, with the
// units and key tiles of all calls. Together needs attnSplitUnits units per
// worker, few queries per call (rows·G < 4·mr) with HeadDim a multiple of
// nr (so decode-sized calls, which read V in place with no padded copy) and
// balance. This is narrower than attention's own in-place rule, which also
// reads V in place when the rows make one row block, on purpose: a call of
// that size (a question's rows) always runs call by call, whatever else is
// in the batch, so its bits never depend on its batch partners. For
// balance: a unit costs its call's tiles, and the team hands
// out runs of ⌈units/2T⌉ consecutive units, so one long sequence's KV heads
// can land on one worker unsplit, where the call-by-call route splits its
// slots over all of them. So a run of the longest call's units must cost no
// more than a worker's share of all the work (one worker runs them all
// in any order).
func attnBatchRoute(threads int, ks *Kernels, calls []AttnCall) (together bool, units, tiles int) {
	together = true
	work, longest := 0, 0
	for i := range calls {
		c := &calls[i]
		rows, slots := len(c.RowPos), len(c.SlotPos)
		if rows == 0 {
			continue
		}
		G := c.Spec.Heads / c.Spec.KVHeads
		if rows*G >= 4*ks.mr || c.Spec.HeadDim%ks.nr != 0 {
			together = false
		}
		rb := max(1, attnQueries/G)
		nu, nt := (rows+rb-1)/rb*c.Spec.KVHeads, (slots+KeyBlock-1)/KeyBlock
		units += nu
		tiles += nt
		work += nu * max(nt, 1)
		longest = max(longest, nt)
	}
	threads = max(threads, 1)
	run := (units + 2*threads - 1) / (2 * threads)
	if units < attnSplitUnits*threads || threads > 1 && run*longest*threads > work {
		together = false
	}
	return together, units, tiles
}
