package eval

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestTextSentences(t *testing.T) {
	got := TextSentences("  TERMS AND CONDITIONS\n\n 1. Definitions.\n\n \"License\" shall mean the terms\n and conditions. Is it? Yes it is!", "Short. A second document here.")
	// "Is it?" and "Short." are under 3 words; line breaks are spaces.
	want := []string{"TERMS AND CONDITIONS 1.", `"License" shall mean the terms and conditions.`, "Yes it is!", "A second document here."}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q\nwant %q", got, want)
	}
}

func TestTextHaystack(t *testing.T) {
	text, err := ReadTextSources([]string{"../testdata/realtext/Apache-2.0"})
	if err != nil {
		t.Fatal(err)
	}
	inText := map[string]bool{}
	for _, s := range text {
		inText[s] = true
	}
	cfg := Config{Task: TaskNIAHSingle, N: 4, Seed: 7, ContextTokens: 600, ChunkTokens: 150, Haystack: HaystackText, Text: text}
	exs, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Generate(context.Background(), cfg)
	if !reflect.DeepEqual(exs, again) {
		t.Error("not deterministic")
	}
	for _, ex := range exs {
		if len(ex.Needles) != 1 || len(ex.Answers) != 1 || ex.Answers[0] != ex.Needles[0].Value {
			t.Fatalf("%s: needles %+v answers %v", ex.QueryID, ex.Needles, ex.Answers)
		}
		nd := ex.Needles[0]
		var all []string
		for i, ch := range ex.Chunks {
			body := ch.Text
			if i == nd.Chunk {
				if !strings.HasPrefix(body[nd.Offset:], nd.Text) {
					t.Fatalf("%s: needle not at its offset", ex.QueryID)
				}
				body = strings.Replace(body, nd.Text, "", 1)
			}
			all = append(all, body)
		}
		// Everything but the needle is real sentences, in document order.
		joined := strings.Join(all, " ")
		if strings.Contains(joined, nd.Value) {
			t.Errorf("%s: the answer appears outside the needle", ex.QueryID)
		}
		hits := 0
		for _, s := range text {
			if strings.Contains(joined, s) {
				hits++
			}
		}
		if hits < 5 {
			t.Errorf("%s: only %d real sentences in the haystack", ex.QueryID, hits)
		}
	}
	for _, bad := range []Config{
		{Task: TaskNIAHSingle, N: 1, ContextTokens: 100, ChunkTokens: 50, Haystack: HaystackText},
		{Task: TaskVT, N: 1, ContextTokens: 100, ChunkTokens: 50, Haystack: HaystackText, Text: text},
	} {
		if _, err := Generate(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "haystack text") {
			t.Errorf("%s: error %v", bad.Task, err)
		}
	}
}
