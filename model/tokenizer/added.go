package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

type addedToken struct {
	content                    string
	id                         int32
	special                    bool
	lstrip, rstrip, singleWord bool
}

// trieNode is a byte trie over added-token contents; tok is the index into
// Tokenizer.added of the token ending here, or -1.
type trieNode struct {
	next map[byte]*trieNode
	tok  int
	// first marks the bytes some token starts with (root only): most text
	// bytes start none, and a table test is cheaper than a map lookup.
	first [256]bool
}

func newTrie() *trieNode { return &trieNode{next: map[byte]*trieNode{}, tok: -1} }

func (n *trieNode) insert(s string, tok int) {
	n.first[s[0]] = true
	for i := 0; i < len(s); i++ {
		c, ok := n.next[s[i]]
		if !ok {
			c = newTrie()
			n.next[s[i]] = c
		}
		n = c
	}
	if n.tok < 0 {
		n.tok = tok
	}
}

func buildTries(added []addedToken) (all, nonSpecial *trieNode) {
	all, nonSpecial = newTrie(), newTrie()
	for i, a := range added {
		all.insert(a.content, i)
		if !a.special {
			nonSpecial.insert(a.content, i)
		}
	}
	return all, nonSpecial
}

// longestAt is the added token with the longest content starting at text[i].
func (n *trieNode) longestAt(text string, i int) (tok, end int) {
	tok = -1
	for j := i; j < len(text); j++ {
		c, ok := n.next[text[j]]
		if !ok {
			break
		}
		n = c
		if n.tok >= 0 {
			tok, end = n.tok, j+1
		}
	}
	return tok, end
}

func isWordChar(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }

// splitAdded calls fn for each stretch of text in order: (start, end, -1) for
// ordinary text and (start, end, id) for an added token, matched leftmost and
// longest. lstrip/rstrip tokens swallow the whitespace beside them.
func splitAdded(text string, trie *trieNode, added []addedToken, fn func(start, end int, id int32) error) error {
	if len(trie.next) == 0 {
		return fn(0, len(text), -1)
	}
	segStart := 0
	for i := 0; i < len(text); {
		if !trie.first[text[i]] {
			i++
			continue
		}
		tok, end := trie.longestAt(text, i)
		if tok < 0 {
			i++
			continue
		}
		a := added[tok]
		if a.singleWord {
			before, _ := utf8.DecodeLastRuneInString(text[:i])
			after, _ := utf8.DecodeRuneInString(text[end:])
			if (i > 0 && isWordChar(before)) || (end < len(text) && isWordChar(after)) {
				i++
				continue
			}
		}
		s, e := i, end
		if a.lstrip {
			for s > segStart {
				r, n := utf8.DecodeLastRuneInString(text[segStart:s])
				if !unicode.IsSpace(r) {
					break
				}
				s -= n
			}
		}
		if a.rstrip {
			for e < len(text) {
				r, n := utf8.DecodeRuneInString(text[e:])
				if !unicode.IsSpace(r) {
					break
				}
				e += n
			}
		}
		if s > segStart {
			if err := fn(segStart, s, -1); err != nil {
				return err
			}
		}
		if err := fn(s, e, a.id); err != nil {
			return err
		}
		segStart, i = e, e
	}
	if segStart < len(text) {
		return fn(segStart, len(text), -1)
	}
	return nil
}
