package tokenizer

import (
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// gpt2Pattern is what ByteLevel splits with when use_regex is set.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// preStep refines a list of byte spans of the normalised text.
type preStep interface {
	split(s string, spans [][2]int) ([][2]int, error)
}

type behavior int

const (
	isolated behavior = iota
	removed
	mergedWithPrevious
	mergedWithNext
	contiguous
)

func parseBehavior(s string) (behavior, bool) {
	switch s {
	case "Isolated", "":
		return isolated, true
	case "Removed":
		return removed, true
	case "MergedWithPrevious":
		return mergedWithPrevious, true
	case "MergedWithNext":
		return mergedWithNext, true
	case "Contiguous":
		return contiguous, true
	}
	return 0, false
}

// matcher finds the byte spans of a pattern's matches in s.
type matcher interface {
	find(s string) ([][2]int, error)
}

type re2Matcher struct{ re *regexp2.Regexp }

func (m re2Matcher) find(s string) ([][2]int, error) {
	if s == "" {
		return nil, nil
	}
	runes := []rune(s)
	// regexp2 reports rune indices; byteAt maps them to byte offsets.
	byteAt := make([]int, len(runes)+1)
	b := 0
	for i, r := range runes {
		byteAt[i] = b
		n := utf8.RuneLen(r)
		if n < 0 {
			n = 3
		}
		b += n
	}
	byteAt[len(runes)] = b
	if b != len(s) {
		// invalid UTF-8 became U+FFFD: rebuild positions from the bytes
		byteAt = byteAt[:0]
		for i := range s {
			byteAt = append(byteAt, i)
		}
		byteAt = append(byteAt, len(s))
	}
	var out [][2]int
	mt, err := m.re.FindRunesMatch(runes)
	for err == nil && mt != nil {
		if mt.Length > 0 {
			out = append(out, [2]int{byteAt[mt.Index], byteAt[mt.Index+mt.Length]})
		}
		mt, err = m.re.FindNextMatch(mt)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

type literalMatcher struct{ lit string }

func (m literalMatcher) find(s string) ([][2]int, error) {
	var out [][2]int
	if m.lit == "" {
		return nil, nil
	}
	for i := 0; i+len(m.lit) <= len(s); {
		j := indexFrom(s, m.lit, i)
		if j < 0 {
			break
		}
		out = append(out, [2]int{j, j + len(m.lit)})
		i = j + len(m.lit)
	}
	return out, nil
}

func indexFrom(s, sub string, from int) int {
	for i := from; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

type funcMatcher func(s string) [][2]int

func (f funcMatcher) find(s string) ([][2]int, error) { return f(s), nil }

type splitStep struct {
	m      matcher
	beh    behavior
	invert bool
}

func (st splitStep) split(s string, spans [][2]int) ([][2]int, error) {
	var out [][2]int
	for _, sp := range spans {
		ms, err := st.m.find(s[sp[0]:sp[1]])
		if err != nil {
			return nil, err
		}
		out = applyBehavior(out, sp[0], sp[1]-sp[0], ms, st.beh, st.invert)
	}
	return out, nil
}

type piece struct {
	s, e  int
	match bool
}

func applyBehavior(out [][2]int, base, n int, ms [][2]int, beh behavior, invert bool) [][2]int {
	var ps []piece
	at := 0
	for _, m := range ms {
		if m[0] > at {
			ps = append(ps, piece{at, m[0], invert})
		}
		ps = append(ps, piece{m[0], m[1], !invert})
		at = m[1]
	}
	if at < n {
		ps = append(ps, piece{at, n, invert})
	}
	emit := func(s, e int) {
		if e > s {
			out = append(out, [2]int{base + s, base + e})
		}
	}
	switch beh {
	case isolated:
		for _, p := range ps {
			emit(p.s, p.e)
		}
	case removed:
		for _, p := range ps {
			if !p.match {
				emit(p.s, p.e)
			}
		}
	case mergedWithPrevious:
		start := -1
		for i, p := range ps {
			if start < 0 {
				start = p.s
			}
			if p.match || i == len(ps)-1 {
				emit(start, p.e)
				start = -1
			}
		}
	case mergedWithNext:
		start := -1
		for i, p := range ps {
			if p.match && start >= 0 {
				emit(start, p.s)
				start = -1
			}
			if start < 0 {
				start = p.s
			}
			if i == len(ps)-1 {
				emit(start, p.e)
			}
		}
	case contiguous:
		for i := 0; i < len(ps); i++ {
			p := ps[i]
			e := p.e
			for p.match && i+1 < len(ps) && ps[i+1].match {
				i++
				e = ps[i].e
			}
			emit(p.s, e)
		}
	}
	return out
}

func digitsMatcher(individual bool) funcMatcher {
	return func(s string) [][2]int {
		var out [][2]int
		for i, r := range s {
			if !unicode.IsDigit(r) && !unicode.Is(unicode.N, r) {
				continue
			}
			n := utf8.RuneLen(r)
			if !individual && len(out) > 0 && out[len(out)-1][1] == i {
				out[len(out)-1][1] = i + n
				continue
			}
			out = append(out, [2]int{i, i + n})
		}
		return out
	}
}

func whitespaceMatcher(s string) [][2]int {
	var out [][2]int
	for i, r := range s {
		if !unicode.IsSpace(r) {
			continue
		}
		n := utf8.RuneLen(r)
		if len(out) > 0 && out[len(out)-1][1] == i {
			out[len(out)-1][1] = i + n
			continue
		}
		out = append(out, [2]int{i, i + n})
	}
	return out
}

var wordRE = regexp.MustCompile(`\w+|[^\w\s]+`)

func wordMatcher(s string) [][2]int {
	var out [][2]int
	for _, m := range wordRE.FindAllStringIndex(s, -1) {
		out = append(out, [2]int{m[0], m[1]})
	}
	return out
}

func compileRegex(pat, field string) (matcher, error) {
	re, err := regexp2.Compile(pat, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("%s: bad regex %q: %w", field, pat, err)
	}
	if fast := fastMatcherFor(pat); fast != nil {
		return fast, nil
	}
	return re2Matcher{re}, nil
}

// preResult is what a pre_tokenizer object turns into: text rewrites applied
// before splitting, and splitting steps.
type preResult struct {
	norm      []normStep
	steps     []preStep
	byteLevel bool
}

func parsePreTokenizer(v map[string]any, field string, res *preResult) error {
	if v == nil {
		return nil
	}
	typ, _ := v["type"].(string)
	switch typ {
	case "Sequence":
		list, _ := v["pretokenizers"].([]any)
		for i, x := range list {
			m, ok := x.(map[string]any)
			if !ok {
				return fmt.Errorf("%s.pretokenizers[%d]: not an object", field, i)
			}
			if err := parsePreTokenizer(m, fmt.Sprintf("%s.pretokenizers[%d]", field, i), res); err != nil {
				return err
			}
		}
	case "Split":
		pat, _ := v["pattern"].(map[string]any)
		var m matcher
		if r, ok := pat["Regex"].(string); ok {
			var err error
			if m, err = compileRegex(r, field+".pattern.Regex"); err != nil {
				return err
			}
		} else if s, ok := pat["String"].(string); ok {
			m = literalMatcher{s}
		} else {
			return fmt.Errorf("%s.pattern: want Regex or String", field)
		}
		bs, _ := v["behavior"].(string)
		beh, ok := parseBehavior(bs)
		if !ok {
			return fmt.Errorf("%s.behavior: unknown %q", field, bs)
		}
		inv, _ := v["invert"].(bool)
		res.steps = append(res.steps, splitStep{m: m, beh: beh, invert: inv})
	case "ByteLevel":
		res.byteLevel = true
		if b, _ := v["add_prefix_space"].(bool); b {
			res.norm = append(res.norm, prependStep{text: " ", skipIfPresent: true})
		}
		useRe := true
		if b, ok := v["use_regex"].(bool); ok {
			useRe = b
		}
		if useRe {
			m, err := compileRegex(gpt2Pattern, field)
			if err != nil {
				return err
			}
			res.steps = append(res.steps, splitStep{m: m, beh: isolated})
		}
	case "Metaspace":
		rep, _ := v["replacement"].(string)
		if rep == "" {
			rep = "▁"
		}
		scheme, _ := v["prepend_scheme"].(string)
		if scheme == "" {
			scheme = "always"
			if b, ok := v["add_prefix_space"].(bool); ok && !b {
				scheme = "never"
			}
		}
		res.norm = append(res.norm, replaceStep{" ", rep})
		switch scheme {
		case "always":
			res.norm = append(res.norm, prependStep{text: rep, skipIfPresent: true})
		case "first":
			res.norm = append(res.norm, prependStep{text: rep, skipIfPresent: true, onlyFirst: true})
		case "never":
		default:
			return fmt.Errorf("%s.prepend_scheme: unknown %q", field, scheme)
		}
		split := true
		if b, ok := v["split"].(bool); ok {
			split = b
		}
		if split {
			res.steps = append(res.steps, splitStep{m: literalMatcher{rep}, beh: mergedWithNext})
		}
	case "Digits":
		ind, _ := v["individual_digits"].(bool)
		res.steps = append(res.steps, splitStep{m: digitsMatcher(ind), beh: isolated})
	case "WhitespaceSplit":
		res.steps = append(res.steps, splitStep{m: funcMatcher(whitespaceMatcher), beh: removed})
	case "Whitespace":
		res.steps = append(res.steps, splitStep{m: funcMatcher(wordMatcher), beh: isolated, invert: false}, splitStep{m: funcMatcher(whitespaceMatcher), beh: removed})
	default:
		return fmt.Errorf("%s.type: unsupported pre_tokenizer %q", field, typ)
	}
	return nil
}
