package tokenizer_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"cacheclip/model/testmodel"
	"cacheclip/model/tokenizer"
)

// FuzzLoadHF: any tokenizer.json and tokenizer_config.json give a tokenizer
// or an error, never a panic; a tokenizer that loads encodes and decodes text.
func FuzzLoadHF(f *testing.F) {
	for _, s := range testmodel.Variants()[:2] {
		dir := filepath.Join(f.TempDir(), s.Name)
		if err := testmodel.Write(dir, s); err != nil {
			f.Fatal(err)
		}
		tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		tc, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tj, tc)
	}
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}}`), []byte(`{"bos_token":"a","add_bos_token":true}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a","a"]]},"added_tokens":[{"id":99999999,"content":"x","special":true}]}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, tokJSON, cfgJSON []byte) {
		// A file that makes loading or encoding hang is a denial of service:
		// crash the worker so the fuzzer records the input. 8 s, under the
		// fuzz worker's own 10 s limit per input, which crashes the worker
		// without saying why (docs/RELIABILITY.md, "Fuzzing").
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(8 * time.Second):
				panic("tokenizer load/encode took over 8s")
			}
		}()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tokJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfgJSON, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := tokenizer.ReadConfig(filepath.Join(dir, "tokenizer_config.json")); err != nil {
			return
		}
		tk, err := tokenizer.Load(dir)
		if err != nil {
			return
		}
		enc, err := tk.Encode("Hello, wörld 123 <|im_start|>", tokenizer.EncodeOptions{ParseSpecial: true})
		if err != nil {
			return
		}
		for _, id := range enc.IDs {
			if id < 0 || int(id) >= tk.VocabSize() {
				t.Fatalf("encoded id %d outside the vocabulary of %d", id, tk.VocabSize())
			}
		}
		_ = tk.Decode(enc.IDs)
	})
}
