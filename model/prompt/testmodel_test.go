package prompt

import (
	"slices"
	"testing"

	"cacheclip/model/testmodel"
	"cacheclip/model/tokenizer"
)

// The generated test models (used by tests across the project) load, detect
// their template and lay out a prompt.
func TestGeneratedModels(t *testing.T) {
	for _, s := range testmodel.Variants() {
		t.Run(s.Name, func(t *testing.T) {
			dir := t.TempDir()
			if err := testmodel.Write(dir, s); err != nil {
				t.Fatal(err)
			}
			tk, err := tokenizer.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			text := "The answer is in the documents.\n\tfunc main() {}"
			enc, err := tk.Encode(text, tokenizer.EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := tk.Decode(enc.IDs); got != text {
				t.Fatalf("round trip %q", got)
			}
			tm, err := Detect(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := s.Template
			if want == "" {
				want = "plain"
			}
			if tm.Name != want {
				t.Fatalf("detected %s, want %s", tm.Name, want)
			}
			l, err := tm.Build(tk, []string{"Doc."}, "Q?")
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Chunks) != 1 || len(l.Question.IDs) == 0 || slices.Contains(l.Chunks[0].IDs, -1) {
				t.Fatalf("layout %+v", l)
			}
		})
	}
}
