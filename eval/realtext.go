package eval

import (
	"fmt"
	"os"
	"strings"
	"unicode"
)

// HaystackText fills the haystack with consecutive sentences of real
// documents (Config.Text), starting at a random sentence and wrapping around,
// as RULER's essay haystack does: the needle sits in natural prose instead of
// a repeated pattern.
const HaystackText = "text"

// textFiller returns consecutive sentences of the configured text.
func (g *gen) textFiller() func() string {
	i := g.rng.IntN(len(g.cfg.Text))
	return func() string {
		s := g.cfg.Text[i%len(g.cfg.Text)]
		i++
		return s
	}
}

// TextSentences splits documents into sentences for HaystackText: runs of
// whitespace (line breaks of the plain-text layout included) become one space,
// and a sentence ends after '.', '?' or '!' followed by a space. Sentences
// shorter than 3 words (headings, list markers) are dropped.
func TextSentences(docs ...string) []string {
	var out []string
	for _, d := range docs {
		text := strings.Join(strings.FieldsFunc(d, unicode.IsSpace), " ")
		start := 0
		for i := 0; i < len(text); i++ {
			c := text[i]
			if (c == '.' || c == '?' || c == '!') && (i+1 == len(text) || text[i+1] == ' ') {
				if s := strings.TrimSpace(text[start : i+1]); len(strings.Fields(s)) >= 3 {
					out = append(out, s)
				}
				start = i + 1
			}
		}
	}
	return out
}

// ReadTextSources reads documents from files and splits them into sentences.
func ReadTextSources(paths []string) ([]string, error) {
	var docs []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("eval: text haystack: %w", err)
		}
		docs = append(docs, string(b))
	}
	s := TextSentences(docs...)
	if len(s) == 0 {
		return nil, fmt.Errorf("eval: text haystack: no sentences in %s", strings.Join(paths, ", "))
	}
	return s, nil
}
