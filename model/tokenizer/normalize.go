package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normText is a normalised segment with, per byte, the span of the original
// segment it came from, so token offsets can point back into the input.
// src is nil while the text is unchanged (the common case, kept cheap).
type normText struct {
	s   string
	src [][2]int32
}

func newNormText(s string) normText { return normText{s: s} }

func (n *normText) identity() {
	if n.src != nil {
		return
	}
	n.src = make([][2]int32, len(n.s))
	for i := range n.src {
		n.src[i] = [2]int32{int32(i), int32(i + 1)}
	}
}

// orig maps the normalised span [s,e) to a span of the original segment.
func (n *normText) orig(s, e int) (int, int) {
	if n.src == nil {
		return s, e
	}
	if s >= e {
		if s < len(n.src) {
			return int(n.src[s][0]), int(n.src[s][0])
		}
		return len(n.s), len(n.s)
	}
	a, b := int(n.src[s][0]), int(n.src[e-1][1])
	for i := s; i < e; i++ { // replaced stretches may map out of order
		a = min(a, int(n.src[i][0]))
		b = max(b, int(n.src[i][1]))
	}
	return a, b
}

// span is the original span covered by normalised bytes [s,e).
func (n *normText) span(s, e int) [2]int32 {
	a, b := n.orig(s, e)
	return [2]int32{int32(a), int32(b)}
}

// normStep is one normaliser (or pre-tokeniser step that rewrites text).
type normStep interface {
	apply(n *normText, first bool)
}

type nfStep struct{ form norm.Form }

func (st nfStep) apply(n *normText, _ bool) {
	if st.form.IsNormalString(n.s) {
		return
	}
	n.identity()
	var it norm.Iter
	it.InitString(st.form, n.s)
	var b strings.Builder
	var src [][2]int32
	for !it.Done() {
		from := it.Pos()
		seg := it.Next()
		to := it.Pos()
		sp := n.span(from, to)
		b.Write(seg)
		for range seg {
			src = append(src, sp)
		}
	}
	n.s, n.src = b.String(), src
}

type prependStep struct {
	text          string
	onlyFirst     bool // Metaspace prepend_scheme "first"
	skipIfPresent bool
}

func (st prependStep) apply(n *normText, first bool) {
	if n.s == "" || (st.onlyFirst && !first) || (st.skipIfPresent && strings.HasPrefix(n.s, st.text)) {
		return
	}
	n.identity()
	at := n.src[0][0]
	src := make([][2]int32, 0, len(st.text)+len(n.src))
	for range len(st.text) {
		src = append(src, [2]int32{at, at})
	}
	n.s, n.src = st.text+n.s, append(src, n.src...)
}

type replaceStep struct{ from, to string }

func (st replaceStep) apply(n *normText, _ bool) {
	if st.from == "" || !strings.Contains(n.s, st.from) {
		return
	}
	n.identity()
	var b strings.Builder
	src := make([][2]int32, 0, len(n.s))
	i := 0
	for {
		j := strings.Index(n.s[i:], st.from)
		if j < 0 {
			break
		}
		b.WriteString(n.s[i : i+j])
		src = append(src, n.src[i:i+j]...)
		sp := n.span(i+j, i+j+len(st.from))
		b.WriteString(st.to)
		for range len(st.to) {
			src = append(src, sp)
		}
		i += j + len(st.from)
	}
	b.WriteString(n.s[i:])
	src = append(src, n.src[i:]...)
	n.s, n.src = b.String(), src
}

type lowerStep struct{}

func (lowerStep) apply(n *normText, _ bool) {
	if strings.ToLower(n.s) == n.s {
		return
	}
	n.identity()
	var b strings.Builder
	var src [][2]int32
	for i, r := range n.s {
		size := utf8.RuneLen(r)
		if r == utf8.RuneError {
			size = 1
		}
		sp := n.span(i, i+size)
		lo := strings.ToLower(n.s[i : i+size])
		b.WriteString(lo)
		for range len(lo) {
			src = append(src, sp)
		}
	}
	n.s, n.src = b.String(), src
}

// parseNormalizer turns tokenizer.json's "normalizer" object into steps.
func parseNormalizer(v map[string]any, field string) ([]normStep, error) {
	if v == nil {
		return nil, nil
	}
	typ, _ := v["type"].(string)
	switch typ {
	case "Sequence":
		list, _ := v["normalizers"].([]any)
		var out []normStep
		for i, x := range list {
			m, ok := x.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s.normalizers[%d]: not an object", field, i)
			}
			s, err := parseNormalizer(m, fmt.Sprintf("%s.normalizers[%d]", field, i))
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		return out, nil
	case "NFC":
		return []normStep{nfStep{norm.NFC}}, nil
	case "NFD":
		return []normStep{nfStep{norm.NFD}}, nil
	case "NFKC":
		return []normStep{nfStep{norm.NFKC}}, nil
	case "NFKD":
		return []normStep{nfStep{norm.NFKD}}, nil
	case "Lowercase":
		return []normStep{lowerStep{}}, nil
	case "Prepend":
		p, _ := v["prepend"].(string)
		return []normStep{prependStep{text: p}}, nil
	case "Replace":
		pat, _ := v["pattern"].(map[string]any)
		from, ok := pat["String"].(string)
		if !ok {
			return nil, fmt.Errorf("%s.pattern: only String patterns are supported for Replace", field)
		}
		to, _ := v["content"].(string)
		return []normStep{replaceStep{from, to}}, nil
	default:
		return nil, fmt.Errorf("%s.type: unsupported normalizer %q", field, typ)
	}
}
