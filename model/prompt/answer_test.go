package prompt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"cacheclip/model/tokenizer"
)

// The test bed was trained on "Question: {q}\nAnswer:" followed by " {answer}":
// an answer's ids must be those the reference (Hugging Face) tokenizer gives
// " 12345", whether or not the caller writes the space.
func TestEncodeAnswerFollowsTheTrainedLayout(t *testing.T) {
	dir := "../../testdata/testbed/primary"
	tk, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("../../testdata/testbed", "tokenizer_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Cases []struct {
			Text string  `json:"text"`
			IDs  []int32 `json:"ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	want := map[string][]int32{}
	for _, c := range ref.Cases {
		want[c.Text] = c.IDs
	}
	tm, err := ByName("plain")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ answer, ref string }{{"12345", " 12345"}, {" 12345", " 12345"}, {"ABC, QXZ", " ABC, QXZ"}} {
		w, ok := want[c.ref]
		if !ok {
			t.Fatalf("reference has no case %q", c.ref)
		}
		got, err := tm.EncodeAnswer(tk, "Repeat the text above.", c.answer)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, w) {
			t.Errorf("answer %q: ids %v, reference %v", c.answer, got, w)
		}
	}
}

// After a chat format's assistant header the answer starts without a space;
// tokenised with the prompt it decodes to itself.
func TestEncodeAnswerChat(t *testing.T) {
	for _, c := range []struct{ tmpl, tok string }{{"chatml", "qwen3"}, {"llama3", "llama3"}, {"llama2", "mistral"}} {
		t.Run(c.tmpl, func(t *testing.T) {
			tk := tok(t, c.tok)
			tm, err := ByName(c.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range []string{"Paris", "positive", "B"} {
				ids, err := tm.EncodeAnswer(tk, "Which city?", a)
				if err != nil {
					t.Fatal(err)
				}
				lead := tm.answerLead
				if got := tk.Decode(ids); got != lead+a && got != a {
					t.Errorf("answer %q decodes to %q", a, got)
				}
			}
			if _, err := tm.EncodeAnswer(tk, "Which city?", ""); err == nil {
				t.Error("empty answer encoded")
			}
		})
	}
}
