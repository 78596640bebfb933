package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

// The hand-written splitters must find exactly the matches regexp2 finds.
func TestFastSplitMatchesRegex(t *testing.T) {
	pieces := []string{"a", "Z", "é", "ſ", "日本", "ß", "'", "'s", "'S", "'re", "'LL", "'ve", "'d", "'m", "'t", "'x",
		" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u200b", "\u0085", "\v", "\f",
		"0", "12", "٣", "½", "Ⅻ", "!", "...", "—", "🍕", "\u200d", "_", "-", "\xff", "\xe6\x97", "\x80", "$", "\u0301"}
	rng := rand.New(rand.NewPCG(7, 9))
	for _, pat := range []string{qwenPattern, llama3Pattern, gpt2Pattern} {
		fast := fastMatcherFor(pat)
		if fast == nil {
			t.Fatalf("no fast matcher for %q", pat)
		}
		slow := re2Matcher{regexp2.MustCompile(pat, regexp2.None)}
		for i := range 3000 {
			var b strings.Builder
			for range 1 + rng.IntN(24) {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			s := b.String()
			if i == 0 {
				s = "Hello, world!  It's 2026;\n\n  x\t\ty   \r\n  end  "
			}
			want, err := slow.find(s)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := fast.find(s)
			if !slices.Equal(got, want) {
				t.Fatalf("pattern %q on %q:\nfast  %v\nregex %v", pat, s, got, want)
			}
		}
	}
}
