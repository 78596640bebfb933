package kvshards_test

import (
	"context"
	"math"
	"testing"

	"cacheclip/kernels"
	"cacheclip/kvshards"
	"cacheclip/kvshards/kvtest"
)

// validShard encodes a small shard; which selects the shape and dtype.
func validShard(which uint8) []byte {
	shapes := []struct {
		dt                    kernels.DType
		layers, kvh, hd, toks int
		base                  int
	}{
		{kernels.F32, 1, 1, 2, 3, 0},
		{kernels.F16, 2, 1, 4, 5, 7},
		{kernels.BF16, 2, 2, 3, 4, 1},
		{kernels.BF16, 1, 1, 1, 0, 2},
	}
	sh := shapes[int(which)%len(shapes)]
	c := kvtest.New(uint64(which), sh.layers, sh.kvh, sh.hd)
	prefix := make([]int32, sh.base)
	chunk := make([]int32, sh.toks)
	for i := range chunk {
		chunk[i] = int32(i*31 + 5)
	}
	kv, _ := c.ComputeChunk(context.Background(), prefix, chunk)
	data, _, err := kvshards.Encode(kv, c.Fingerprint(), kvshards.PrefixHash(prefix), sh.dt)
	if err != nil {
		panic(err)
	}
	return data
}

// FuzzParse feeds arbitrary bytes to the parser: it must not panic or read out
// of bounds, and whatever it accepts must decode and re-encode to a shard with
// the same header and key.
func FuzzParse(f *testing.F) {
	for i := range uint8(4) {
		f.Add(validShard(i))
	}
	f.Add([]byte(kvshards.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := kvshards.ParseBytes(data, true)
		if err != nil {
			if h != nil {
				t.Fatal("header returned with an error")
			}
			return
		}
		if h.FileSize != int64(len(data)) {
			t.Fatalf("accepted %d bytes, header says %d", len(data), h.FileSize)
		}
		sh, err := kvshards.FromBytes(data)
		if err != nil {
			t.Fatalf("ParseBytes accepted what FromBytes refuses: %v", err)
		}
		kv, err := sh.ChunkKV()
		if err != nil {
			t.Fatal(err)
		}
		again, key, err := kvshards.Encode(kv, h.Fingerprint, h.PrefixHash, h.DType)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := kvshards.ParseBytes(again, true)
		if err != nil || key != h.Key || h2.Layers != h.Layers || h2.Tokens != h.Tokens || h2.BasePos != h.BasePos || h2.DType != h.DType {
			t.Fatalf("re-encoding an accepted shard changed it: %v", err)
		}
		kv2, _ := kvshards.FromBytes(again)
		back, _ := kv2.ChunkKV()
		for l := range kv.Layers {
			for i := range kv.K[l] {
				if !sameFloat(kv.K[l][i], back.K[l][i]) || !sameFloat(kv.V[l][i], back.V[l][i]) {
					t.Fatalf("layer %d elem %d changed on re-encode", l, i)
				}
			}
		}
	})
}

func sameFloat(a, b float32) bool {
	return a == b || (math.IsNaN(float64(a)) && math.IsNaN(float64(b)))
}

// FuzzDamage flips bytes in and truncates valid shards: every damaged file
// must be rejected.
func FuzzDamage(f *testing.F) {
	f.Add(uint8(0), uint32(0), uint8(1), uint32(0))
	f.Add(uint8(1), uint32(200), uint8(0x80), uint32(0))
	f.Add(uint8(2), uint32(1000), uint8(0), uint32(1))
	f.Add(uint8(3), uint32(9), uint8(0xff), uint32(17))
	f.Fuzz(func(t *testing.T, which uint8, pos uint32, xor uint8, cut uint32) {
		data := validShard(which)
		if xor == 0 && cut == 0 {
			xor = 1
		}
		if xor != 0 {
			data[int(pos)%len(data)] ^= xor
		}
		if cut != 0 {
			data = data[:len(data)-1-int(cut)%len(data)]
		}
		if _, err := kvshards.ParseBytes(data, true); err == nil {
			t.Fatalf("damaged shard accepted (shape %d, byte %d ^ %#x, cut %d)", which, int(pos)%len(data), xor, cut)
		}
		if _, err := kvshards.FromBytes(data); err == nil {
			t.Fatal("FromBytes accepted a damaged shard")
		}
	})
}

func TestEncodeRejectsBadInput(t *testing.T) {
	ok := func() *kvshards.ChunkKV {
		kv, _ := kvtest.New(1, 2, 1, 2).ComputeChunk(context.Background(), nil, []int32{1, 2})
		return kv
	}
	for _, tc := range []struct {
		name string
		edit func(*kvshards.ChunkKV)
	}{
		{"short K", func(kv *kvshards.ChunkKV) { kv.K[1] = kv.K[1][:3] }},
		{"missing V layer", func(kv *kvshards.ChunkKV) { kv.V = kv.V[:1] }},
		{"zero heads", func(kv *kvshards.ChunkKV) { kv.KVHeads = 0 }},
		{"negative base", func(kv *kvshards.ChunkKV) { kv.BasePos = -1 }},
		{"too many layers", func(kv *kvshards.ChunkKV) { kv.Layers = kvshards.MaxLayers + 1 }},
	} {
		kv := ok()
		tc.edit(kv)
		if _, _, err := kvshards.Encode(kv, [32]byte{}, [32]byte{}, kernels.BF16); err == nil {
			t.Errorf("%s: encoded", tc.name)
		}
	}
	if _, _, err := kvshards.Encode(ok(), [32]byte{}, [32]byte{}, kernels.DType(9)); err == nil {
		t.Error("unknown dtype encoded")
	}
	if _, err := kvshards.ParseBytes(nil, true); err == nil {
		t.Error("empty input parsed")
	}
}

// FuzzHeaderFields writes arbitrary dimensions, dtype, base position, header
// and file sizes into a valid shard and re-seals the header checksum, so the
// checks behind it (layout against the file's length, block bounds) are
// exercised: no panic, no out-of-bounds read, and an accepted file must be
// exactly as long as its header says and decode cleanly.
func FuzzHeaderFields(f *testing.F) {
	f.Add(uint8(0), uint32(1), uint32(1), uint32(2), uint32(3), uint8(0), uint32(0), uint32(256), uint64(0), uint32(0))
	f.Add(uint8(1), uint32(1024), uint32(1024), uint32(1024), uint32(1<<24), uint8(2), uint32(5), uint32(64), uint64(1<<62), uint32(7))
	f.Add(uint8(2), uint32(0), uint32(3), uint32(0), uint32(9), uint8(3), uint32(1<<31), uint32(1<<31), uint64(1<<63), uint32(100))
	f.Fuzz(func(t *testing.T, which uint8, layers, kvh, hd, tok uint32, dt uint8, base, hsize uint32, fsize uint64, cut uint32) {
		data := validShard(which)
		le := func(off int, v uint32) {
			data[off], data[off+1], data[off+2], data[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		le(112, layers)
		le(116, kvh)
		le(120, hd)
		le(128, tok)
		data[124] = dt
		le(132, base)
		le(12, hsize)
		for i := range 8 {
			data[136+i] = byte(fsize >> (8 * i))
		}
		data = data[:len(data)-int(cut)%(len(data)+1)]
		kvshards.FixHeaderChecksum(data)
		h, err := kvshards.ParseBytes(data, true)
		if err != nil {
			return
		}
		if h.FileSize != int64(len(data)) {
			t.Fatalf("accepted %d bytes, header says %d", len(data), h.FileSize)
		}
		sh, err := kvshards.FromBytes(data)
		if err != nil {
			t.Fatalf("ParseBytes accepted what FromBytes refuses: %v", err)
		}
		if _, err := sh.ChunkKV(); err != nil {
			t.Fatal(err)
		}
	})
}
