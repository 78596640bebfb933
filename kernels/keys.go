package kernels

// KeyBlock is the number of slots per block of the blocked key layout, the
// layout AttentionBlocked reads and the engine's cache stores:
//
//	[block][kvHead][headDim][KeyBlock]
//
// Within a block each KV head's keys are transposed (a slot's key is a column),
// which is how the attention's score product reads its left operand: keys
// appended one token at a time land in place and are never repacked, however
// long the context. 96 is a multiple of every kernel set's micro-kernel height
// (12, 6 and 4 rows), so a block is always whole panels.
const KeyBlock = 96

// BlockedKeysLen is the length of a blocked key buffer that holds slots slots
// of kvDim floats each (whole blocks).
func BlockedKeysLen(slots, kvDim int) int {
	return (slots + KeyBlock - 1) / KeyBlock * KeyBlock * kvDim
}

// PutKeys writes the keys of slots first, first+1, …, given in the natural
// layout k ([n][kd], kd = kvHeads·headDim), into the blocked buffer dst.
func PutKeys(dst []float32, first, kd int, k []float32) {
	n := len(k) / kd
	for i := 0; i < n; i++ {
		s := first + i
		base := s/KeyBlock*KeyBlock*kd + s%KeyBlock
		col := dst[base : base+(kd-1)*KeyBlock+1]
		for c, x := range k[i*kd : (i+1)*kd] {
			col[c*KeyBlock] = x
		}
	}
}

// GetKeys reads n slots from first out of the blocked buffer src into dst in
// the natural layout ([n][kd]).
func GetKeys(dst, src []float32, first, n, kd int) {
	for i := 0; i < n; i++ {
		s := first + i
		base := s/KeyBlock*KeyBlock*kd + s%KeyBlock
		col := src[base : base+(kd-1)*KeyBlock+1]
		row := dst[i*kd : (i+1)*kd]
		for c := range row {
			row[c] = col[c*KeyBlock]
		}
	}
}
