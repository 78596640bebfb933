package gguf

import "testing"

// FuzzGGUFParse: any bytes either fail with an error or parse into a file
// whose tensors lie inside the data; nothing panics, and the metadata readers
// the loader uses cope with whatever parsed. The seed corpus is
// testdata/fuzz/FuzzGGUFParse plus the files below; `make test` fuzzes for a
// bounded time.
func FuzzGGUFParse(f *testing.F) {
	f.Add(sampleFile(3, 32))
	f.Add(sampleFile(2, 8))
	f.Add(tinyLlama(f, 2, true).bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse("fuzz.gguf", data)
		if err != nil {
			return
		}
		for _, tn := range g.Tensors {
			size, err := tn.Type.RowBytesFor(tn.Dims)
			if err != nil || uint64(len(tn.Data)) != size {
				t.Fatalf("tensor %s: %d bytes, size %d (%v)", tn.Name, len(tn.Data), size, err)
			}
			if n := tn.Elements(); n <= 1<<16 && layouts[tn.Type].dequant != nil {
				_ = Dequantize(make([]float32, n), tn.Data, tn.Type)
			}
		}
		if c, err := g.Config(); err == nil && c.Hidden*c.Layers < 1<<16 {
			_, _ = g.Weights(c)
		}
		_, _, _ = g.TokenizerFiles()
	})
}
