package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The split patterns of the byte-level BPE families, written out by hand: a
// backtracking regex engine spends most of Encode's time on them. The test
// TestFastSplitMatchesRegex checks each against regexp2 on random text.
const (
	// Qwen2, Qwen2.5, Qwen3: digits one at a time.
	qwenPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// Llama 3 (and GPT-4's cl100k): digits in runs of up to three.
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// fastMatcherFor returns a hand-written matcher equivalent to a known split
// pattern, or nil to use the general regex engine.
func fastMatcherFor(pat string) matcher {
	switch pat {
	case qwenPattern:
		return funcMatcher(func(s string) [][2]int { return splitAll(s, func(s string, i int) int { return matchCL100K(s, i, 1) }) })
	case llama3Pattern:
		return funcMatcher(func(s string) [][2]int { return splitAll(s, func(s string, i int) int { return matchCL100K(s, i, 3) }) })
	case gpt2Pattern:
		return funcMatcher(func(s string) [][2]int { return splitAll(s, matchGPT2) })
	}
	return nil
}

// splitAll collects the matches of match from every position, as a regex
// find-all does; match returns the end of the match at i, or i for none.
func splitAll(s string, match func(s string, i int) int) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		e := match(s, i)
		if e > i {
			out = append(out, [2]int{i, e})
			i = e
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
	}
	return out
}

// runeAt decodes the character at i; invalid bytes read as U+FFFD (a symbol),
// as they do for the regex engine, which sees the text as runes.
func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func isL(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

func isN(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

func isS(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// other is [^\s\p{L}\p{N}].
func other(r rune) bool { return r >= 0 && !isS(r) && !isL(r) && !isN(r) }

// contraction matches 's 't 're 've 'm 'll 'd at i (case-insensitively if ci).
func contraction(s string, i int, ci bool) int {
	if i >= len(s) || s[i] != '\'' || i+1 >= len(s) {
		return i
	}
	low := func(c byte) byte {
		if ci && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	c := low(s[i+1])
	switch c {
	case 's', 't', 'm', 'd':
		return i + 2
	}
	if i+2 < len(s) {
		d := low(s[i+2])
		if c == 'r' && d == 'e' || c == 'v' && d == 'e' || c == 'l' && d == 'l' {
			return i + 3
		}
	}
	return i
}

// spaceTail matches \s*[\r\n]+ | \s+(?!\S) | \s+ at i, in that order.
func spaceTail(s string, i int, withNewlineRule bool) int {
	r, n := runeAt(s, i)
	if !isS(r) {
		return i
	}
	j, lastNL := i+n, -1
	if r == '\r' || r == '\n' {
		lastNL = i
	}
	prev := i // start of the last whitespace character
	for {
		r, n := runeAt(s, j)
		if !isS(r) {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = j
		}
		prev = j
		j += n
	}
	if withNewlineRule && lastNL >= 0 {
		return lastNL + 1
	}
	if j == len(s) {
		return j
	}
	if prev > i {
		return prev // leave the last space to prefix the next word
	}
	return j
}

// matchCL100K is the Qwen / Llama 3 pattern at i; maxDigits is 1 or 3.
func matchCL100K(s string, i int, maxDigits int) int {
	if e := contraction(s, i, true); e > i {
		return e
	}
	r, n := runeAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	j := i
	if r != '\r' && r != '\n' && !isL(r) && !isN(r) {
		if r2, _ := runeAt(s, i+n); isL(r2) {
			j = i + n
		}
	}
	if r2, n2 := runeAt(s, j); isL(r2) {
		j += n2
		for {
			r3, n3 := runeAt(s, j)
			if !isL(r3) {
				return j
			}
			j += n3
		}
	}
	// \p{N}{1,maxDigits}
	if isN(r) {
		j = i + n
		for k := 1; k < maxDigits; k++ {
			r2, n2 := runeAt(s, j)
			if !isN(r2) {
				break
			}
			j += n2
		}
		return j
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	j = i
	if r == ' ' {
		j = i + 1
	}
	if r2, _ := runeAt(s, j); other(r2) {
		for {
			r3, n3 := runeAt(s, j)
			if !other(r3) {
				break
			}
			j += n3
		}
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	return spaceTail(s, i, true)
}

// matchGPT2 is GPT-2's pattern at i.
func matchGPT2(s string, i int) int {
	if e := contraction(s, i, false); e > i {
		return e
	}
	r, n := runeAt(s, i)
	j := i
	if r == ' ' {
		j = i + n
	}
	r2, _ := runeAt(s, j)
	for _, class := range []func(rune) bool{isL, isN, other} {
		if class(r2) {
			for {
				r3, n3 := runeAt(s, j)
				if !class(r3) {
					return j
				}
				j += n3
			}
		}
	}
	return spaceTail(s, i, false)
}
