package model_test

import (
	"os"
	"path/filepath"
	"testing"

	"cacheclip/model"
	"cacheclip/model/testmodel"
)

// FuzzParseConfig: any config.json gives a validated Config or an error,
// never a panic; a config that parses and validates has usable dimensions.
func FuzzParseConfig(f *testing.F) {
	for _, s := range testmodel.Variants() {
		dir := filepath.Join(f.TempDir(), s.Name)
		if err := testmodel.Write(dir, s); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"model_type":"llama","hidden_size":1152921504606846976,"num_attention_heads":1,"num_hidden_layers":1,"vocab_size":8}`))
	f.Add([]byte(`{"rope_scaling":{"rope_type":"llama3","factor":0}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := model.ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			return
		}
		for _, d := range []int{c.Heads, c.KVHeads, c.HeadDim, c.Layers, c.Vocab, c.Hidden, c.Intermediate} {
			if d <= 0 || d > 1<<24 {
				t.Fatalf("validated config with a dimension of %d: %+v", d, c)
			}
		}
		if c.Heads <= 0 || c.HeadDim <= 0 || c.Layers <= 0 || c.Vocab <= 0 {
			t.Fatalf("validated config with heads %d head_dim %d layers %d vocab %d", c.Heads, c.HeadDim, c.Layers, c.Vocab)
		}
		_ = c.InvFreq()
	})
}
