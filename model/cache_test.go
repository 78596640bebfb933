package model_test

import (
	"context"
	"strings"
	"testing"

	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// foreignCache is a KVCache of another backend.
type foreignCache struct{ model.KVCache }

// The CPU backend refuses what another backend's seam would hand it, and
// ReadKV refuses ranges outside what the cache holds, naming them.
func TestCacheSeamErrors(t *testing.T) {
	m, err := testmodel.Build(testmodel.Variants()[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewCache(4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Alloc(3); err != nil {
		t.Fatal(err)
	}
	kd := m.Config.KVDim()
	if k, v, err := c.ReadKV(0, 1, 3); err != nil || len(k) != 2*kd || len(v) != 2*kd {
		t.Fatalf("ReadKV(0, 1, 3): %d keys, %d values, %v; want %d each", len(k), len(v), err, 2*kd)
	}
	foreign := foreignCache{c}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"read past the used slots", func() error { _, _, err := c.ReadKV(0, 2, 4); return err }, "slots [2,4)"},
		{"read a reversed range", func() error { _, _, err := c.ReadKV(0, 2, 1); return err }, "slots [2,1)"},
		{"read a missing layer", func() error { _, _, err := c.ReadKV(m.Config.Layers, 0, 1); return err }, "layer"},
		{"alloc a negative count", func() error { _, err := c.Alloc(-1); return err }, "alloc -1"},
		{"fill another backend's cache", func() error {
			return m.Fill(foreign, 0, 0, []int32{0}, make([]float32, kd), make([]float32, kd), []int32{0})
		}, "not a CPU cache"},
		{"fill a missing layer", func() error {
			return m.Fill(c, -1, 0, []int32{0}, make([]float32, kd), make([]float32, kd), []int32{0})
		}, "layer -1"},
		{"forward over another backend's cache", func() error {
			_, err := m.Forward(context.Background(), []*model.Seq{{Cache: foreign, Tokens: []int32{1}, Pos: []int32{3}, Slots: []int32{2}}})
			return err
		}, "sequence 0: a model_test.foreignCache is not a CPU cache"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Keys live in the attention kernel's blocked layout; what goes in through
// WriteKV or Fill comes back out of ReadKV unchanged, across a growth of the
// cache that crosses key blocks, and a write to one slot touches no other.
func TestCacheKeysRoundTrip(t *testing.T) {
	m, err := testmodel.Build(testmodel.Variants()[0])
	if err != nil {
		t.Fatal(err)
	}
	c := m.HostCache(90)
	kd := m.Config.KVDim()
	val := func(layer, slot, i int, v bool) float32 {
		f := float32(layer*100000+slot*100+i) / 7
		if v {
			return -f
		}
		return f
	}
	write := func(from, to int) {
		for l := 0; l < m.Config.Layers; l++ {
			k, v := make([]float32, (to-from)*kd), make([]float32, (to-from)*kd)
			for s := from; s < to; s++ {
				for i := 0; i < kd; i++ {
					k[(s-from)*kd+i], v[(s-from)*kd+i] = val(l, s, i, false), val(l, s, i, true)
				}
			}
			if l%2 == 0 {
				if err := c.WriteKV(l, from, k, v); err != nil {
					t.Fatal(err)
				}
				continue
			}
			pos := make([]int32, to-from)
			for i := range pos {
				pos[i] = int32(from + i)
			}
			if err := m.Fill(c, l, from, pos, k, v, pos); err != nil { // same position: no rotation
				t.Fatal(err)
			}
		}
	}
	if _, err := c.Alloc(90); err != nil {
		t.Fatal(err)
	}
	write(0, 90)
	if _, err := c.Alloc(150); err != nil { // grows past the first key block
		t.Fatal(err)
	}
	write(200, 240)
	for l := 0; l < m.Config.Layers; l++ {
		k, v, err := c.ReadKV(l, 0, 240)
		if err != nil {
			t.Fatal(err)
		}
		for s := 0; s < 240; s++ {
			for i := 0; i < kd; i++ {
				wantK, wantV := val(l, s, i, false), val(l, s, i, true)
				if s >= 90 && s < 200 {
					wantK, wantV = 0, 0 // allocated, never written
				}
				if k[s*kd+i] != wantK || v[s*kd+i] != wantV {
					t.Fatalf("layer %d slot %d elem %d: key %g value %g, want %g, %g", l, s, i, k[s*kd+i], v[s*kd+i], wantK, wantV)
				}
			}
		}
	}
	if err := c.WriteKV(0, 239, make([]float32, 2*kd), make([]float32, 2*kd)); err == nil {
		t.Fatal("WriteKV past the allocated slots succeeded")
	}
}
