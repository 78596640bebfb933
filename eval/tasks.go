package eval

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"unicode"
)

// Task names, after RULER's where one exists.
const (
	TaskNIAHSingle     = "niah_single"
	TaskNIAHMultiKey   = "niah_multikey"
	TaskNIAHMultiValue = "niah_multivalue"
	TaskNIAHMultiQuery = "niah_multiquery"
	TaskVT             = "vt"
	// TaskVTDistractor is variable tracking with distractor chains (one by default), each
	// assigned its own number: the first variable must be found by matching the asked value,
	// which RULER's vt (one chain, the only number in the context) never needs.
	TaskVTDistractor = "vt_distractor"
	TaskMultiHop     = "multihop"
)

// Tasks lists every task Generate knows, in report order.
var Tasks = []string{TaskNIAHSingle, TaskNIAHMultiKey, TaskNIAHMultiValue, TaskNIAHMultiQuery, TaskVT, TaskVTDistractor, TaskMultiHop}

// RULERFamilies are the tasks that are RULER's own (the CacheClip paper's
// NIAH variants and variable tracking); vt_distractor and multihop are this
// project's additions.
var RULERFamilies = []string{TaskNIAHSingle, TaskNIAHMultiKey, TaskNIAHMultiValue, TaskNIAHMultiQuery, TaskVT}

// IsVT reports whether task is one of the variable-tracking tasks.
func IsVT(task string) bool { return task == TaskVT || task == TaskVTDistractor }

// Value types and haystacks.
const (
	ValueNumbers  = "numbers"
	ValueWords    = "words"
	ValueUUIDs    = "uuids"
	HaystackNoise = "noise"
	// HaystackNeedle fills the haystack with distractor needles of other keys (RULER's
	// "needle" haystack), so finding the key, not a number-shaped string, is what counts.
	HaystackNeedle = "needle"
)

// Needle roles.
const (
	RoleAnswer     = "answer"     // a needle whose value is a reference answer
	RoleDistractor = "distractor" // same shape, other key: must not be answered
	RoleChain      = "chain"      // a variable-tracking statement of the asked chain
	RoleFact       = "fact"       // one of the two facts of a multi-hop question
)

// noiseSentences is RULER's noise haystack, repeated in order.
var noiseSentences = []string{"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."}

//go:embed wordlist.txt
var wordlistText string

// Words returns the word list used for keys and word values (also read by
// tools/testbed/train.py, so the test-bed tokenizer covers it compactly).
func Words() []string { return strings.Fields(wordlistText) }

// TokenCounter counts the tokens of a text segment as the job runner will tokenise it.
type TokenCounter func(string) int

// ApproxTokens is a tokenizer-free stand-in: one token per letter run, per digit and per
// other non-space character, roughly what a small byte-level BPE gives on these texts.
func ApproxTokens(s string) int {
	n := 0
	inWord := false
	for _, r := range s {
		switch {
		case unicode.IsLetter(r):
			if !inWord {
				n++
			}
			inWord = true
		case unicode.IsSpace(r):
			inWord = false
		default:
			n++
			inWord = false
		}
	}
	return n
}

// Config describes one evaluation set. Zero values take the defaults noted.
type Config struct {
	Task          string
	N             int    // examples
	Seed          uint64 // example i depends only on (Seed, Task, i)
	ContextTokens int    // target context length over all chunks, in Count's tokens
	ChunkTokens   int    // target tokens per chunk (each chunk counted with its "\n\n")
	ValueType     string // numbers (default), words, uuids; vt and multihop always use numbers
	Haystack      string // noise (default), needle, or text (niah tasks; Text holds the sentences)
	// Text is the real-text haystack's sentences in document order (TextSentences).
	Text []string
	// NumQueries: keys asked by niah_multiquery (default 2).
	NumQueries int
	// NumValues: values per key of niah_multivalue (default 2).
	NumValues int
	// NumDistractors: distractor needles of niah_multikey and niah_multiquery (default 3),
	// distractor fact pairs of multihop (default 1), distractor chains of vt_distractor
	// (default 1). vt has none, as RULER's default (one chain).
	NumDistractors int
	// ChainLength: variables per vt chain (default 4).
	ChainLength  int
	MaxNewTokens int          // written to the questions file (default: room for every reference, at least 32)
	Count        TokenCounter // default ApproxTokens
	IDPrefix     string       // default the task name
}

// Chunk is one corpus row.
type Chunk struct {
	ID     string
	Text   string
	Tokens int // Count(Text + "\n\n"), as the plain template lays the chunk out
}

// Needle is an inserted sentence and where it is.
type Needle struct {
	Chunk  int // index into Example.Chunks
	Offset int // byte offset of Text in Chunks[Chunk].Text
	Text   string
	Key    string
	Value  string
	Role   string
}

// Example is one question with its own chunks.
type Example struct {
	QueryID       string
	Question      string
	Answers       []string
	Task          string
	ValueType     string
	Haystack      string
	Seed          uint64
	Index         int
	TargetTokens  int
	ContextTokens int
	MaxNewTokens  int
	Chunks        []Chunk
	Needles       []Needle
}

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if d.ValueType == "" {
		d.ValueType = ValueNumbers
	}
	if d.Haystack == "" {
		d.Haystack = HaystackNoise
	}
	if d.NumQueries == 0 {
		d.NumQueries = 2
	}
	if d.NumValues == 0 {
		d.NumValues = 2
	}
	if d.Task == TaskVT && d.NumDistractors != 0 {
		return d, fmt.Errorf("eval: task vt has no distractor chains (num_distractors %d): use vt_distractor", d.NumDistractors)
	}
	if d.NumDistractors == 0 {
		switch d.Task {
		case TaskNIAHMultiKey, TaskNIAHMultiQuery:
			d.NumDistractors = 3
		case TaskVTDistractor, TaskMultiHop:
			d.NumDistractors = 1
		}
	}
	if d.ChainLength == 0 {
		d.ChainLength = 4
	}
	if d.Count == nil {
		d.Count = ApproxTokens
	}
	if d.IDPrefix == "" {
		d.IDPrefix = d.Task
	}
	known := false
	for _, t := range Tasks {
		known = known || t == d.Task
	}
	switch {
	case !known:
		return d, fmt.Errorf("eval: unknown task %q (want one of %s)", d.Task, strings.Join(Tasks, ", "))
	case d.N <= 0:
		return d, fmt.Errorf("eval: task %s: n = %d, want > 0", d.Task, d.N)
	case d.ChunkTokens <= 0 || d.ContextTokens < d.ChunkTokens:
		return d, fmt.Errorf("eval: task %s: chunk_tokens %d and context_tokens %d: want 0 < chunk_tokens <= context_tokens", d.Task, d.ChunkTokens, d.ContextTokens)
	case d.ValueType != ValueNumbers && d.ValueType != ValueWords && d.ValueType != ValueUUIDs:
		return d, fmt.Errorf("eval: task %s: unknown value type %q (numbers, words, uuids)", d.Task, d.ValueType)
	case d.Haystack != HaystackNoise && d.Haystack != HaystackNeedle && d.Haystack != HaystackText:
		return d, fmt.Errorf("eval: task %s: unknown haystack %q (noise, needle, text)", d.Task, d.Haystack)
	case d.Haystack == HaystackText && (len(d.Text) == 0 || IsVT(d.Task) || d.Task == TaskMultiHop):
		return d, fmt.Errorf("eval: task %s: haystack text needs a niah task and sentences in Text (%d given)", d.Task, len(d.Text))
	case d.NumQueries < 1 || d.NumValues < 1 || d.NumDistractors < 0 || d.ChainLength < 2 || d.MaxNewTokens < 0:
		return d, fmt.Errorf("eval: task %s: bad counts (queries %d, values %d, distractors %d, chain %d, max_new_tokens %d)", d.Task, d.NumQueries, d.NumValues, d.NumDistractors, d.ChainLength, d.MaxNewTokens)
	case d.Task == TaskMultiHop && d.ContextTokens/d.ChunkTokens < 2:
		return d, fmt.Errorf("eval: task multihop needs at least 2 chunks, context_tokens %d / chunk_tokens %d gives 1", d.ContextTokens, d.ChunkTokens)
	}
	return d, nil
}

// Generate builds cfg.N examples. The same Config gives the same examples.
func Generate(ctx context.Context, cfg Config) ([]Example, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &gen{cfg: c, words: Words(), est: map[string]int{}}
	h := fnv.New64a()
	h.Write([]byte(c.Task))
	taskHash := h.Sum64()
	out := make([]Example, 0, c.N)
	for i := 0; i < c.N; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		g.rng = rand.New(rand.NewPCG(c.Seed, taskHash^uint64(i)*0x9e3779b97f4a7c15))
		ex, err := g.example(i)
		if err != nil {
			return nil, fmt.Errorf("eval: task %s example %d: %w", c.Task, i, err)
		}
		out = append(out, ex)
	}
	return out, nil
}

type gen struct {
	cfg   Config
	words []string
	rng   *rand.Rand
	est   map[string]int // sentence -> Count(" " + sentence)
	curID string         // query id of the example being built
}

type insert struct {
	chunk int
	n     Needle
}

func (g *gen) cost(s string) int {
	n, ok := g.est[s]
	if !ok {
		n = g.cfg.Count(" " + s)
		g.est[s] = n
	}
	return n
}

func (g *gen) nChunks() int {
	n := (g.cfg.ContextTokens + g.cfg.ChunkTokens/2) / g.cfg.ChunkTokens
	return max(n, 1)
}

func (g *gen) value(vt string) string {
	switch vt {
	case ValueWords:
		return g.words[g.rng.IntN(len(g.words))]
	case ValueUUIDs:
		const hex = "0123456789abcdef"
		b := make([]byte, 9)
		for i := range b {
			b[i] = hex[g.rng.IntN(16)]
		}
		b[4] = '-'
		return string(b)
	default:
		return fmt.Sprint(10000 + g.rng.IntN(90000))
	}
}

// keys draws n distinct words not in used, and marks them used.
func (g *gen) keys(n int, used map[string]bool) ([]string, error) {
	var pool []string
	for _, w := range g.words {
		if !used[w] {
			pool = append(pool, w)
		}
	}
	if len(pool) < n {
		return nil, fmt.Errorf("word list too small: need %d unused words, have %d", n, len(pool))
	}
	g.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	for _, w := range pool[:n] {
		used[w] = true
	}
	return pool[:n], nil
}

// fresh draws a value of type vt that is not in used, and marks it used.
func (g *gen) fresh(vt string, used map[string]bool) (string, error) {
	for range 10000 {
		v := g.value(vt)
		if !used[v] {
			used[v] = true
			return v, nil
		}
	}
	return "", errors.New("cannot draw a distinct value")
}

// Sentence and question formats, RULER's where RULER has one. tools/testbed/train.py
// writes the same strings; eval/testbed_test.go checks its samples against these.
const (
	fmtNeedle        = "One of the special magic %s for %s is: %s."
	fmtNIAHQuestion  = "What are all the special magic %s for %s mentioned in the provided text?"
	fmtVTFirst       = "VAR %s = %s."
	fmtVTLink        = "VAR %s = VAR %s."
	fmtVTQuestion    = "Find all variables that are assigned the value %s in the text above."
	fmtFriend        = "The friend of %s is %s."
	fmtMultiHopQuest = "What is the special magic number for the friend of %s?"
	// AnswerSeparator joins several references in the answer the test-bed models were
	// trained to write (" v1, v2"); scoring does not depend on it.
	AnswerSeparator = ", "
)

func needleText(vt, key, val string) string {
	return fmt.Sprintf(fmtNeedle, vt, key, val)
}

// place assigns each insert without a chunk (chunk < 0) to a random chunk that still has
// room, so a chunk never holds more needle text than its budget.
func (g *gen) place(ins []insert, n int) error {
	room := make([]int, n)
	for i := range room {
		room[i] = g.cfg.ChunkTokens - g.cfg.Count("\n\n")
	}
	for _, in := range ins {
		if in.chunk >= 0 {
			room[in.chunk] -= g.cost(in.n.Text)
		}
	}
	for i := range ins {
		if ins[i].chunk >= 0 {
			continue
		}
		c := g.cost(ins[i].n.Text)
		var fit []int
		for j, r := range room {
			if r >= c {
				fit = append(fit, j)
			}
		}
		if len(fit) == 0 {
			return fmt.Errorf("chunk_tokens %d too small for %d needles over %d chunks", g.cfg.ChunkTokens, len(ins), n)
		}
		j := fit[g.rng.IntN(len(fit))]
		ins[i].chunk = j
		room[j] -= c
	}
	return nil
}

// layout fills n chunks with haystack sentences around the inserts (kept in their list
// order within a chunk) and records each needle's chunk and byte offset.
func (g *gen) layout(ins []insert, n int, filler func() string) ([]Chunk, []Needle, error) {
	per := make([][]Needle, n)
	for _, in := range ins {
		if in.chunk < 0 || in.chunk >= n {
			return nil, nil, fmt.Errorf("needle %q has chunk %d of %d", in.n.Text, in.chunk, n)
		}
		per[in.chunk] = append(per[in.chunk], in.n)
	}
	k := g.rng.IntN(len(noiseSentences))
	var chunks []Chunk
	var needles []Needle
	for c := 0; c < n; c++ {
		used := g.cfg.Count("\n\n")
		for _, nd := range per[c] {
			used += g.cost(nd.Text)
		}
		var fill []string
		for {
			var s string
			if filler != nil {
				s = filler()
			} else {
				s = noiseSentences[k%len(noiseSentences)]
			}
			// Take the sentence when that lands nearer the target than stopping short, so
			// chunks straddle the target instead of always falling below it.
			if used+g.cost(s)-g.cfg.ChunkTokens > g.cfg.ChunkTokens-used {
				break
			}
			if filler == nil {
				k++
			}
			fill = append(fill, s)
			used += g.cost(s)
		}
		pos := make([]int, len(per[c]))
		for i := range pos {
			pos[i] = g.rng.IntN(len(fill) + 1)
		}
		sort.Ints(pos)
		var b strings.Builder
		add := func(s string) int {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			off := b.Len()
			b.WriteString(s)
			return off
		}
		j := 0
		for i := 0; i <= len(fill); i++ {
			for j < len(pos) && pos[j] == i {
				nd := per[c][j]
				nd.Chunk, nd.Offset = c, add(nd.Text)
				needles = append(needles, nd)
				j++
			}
			if i < len(fill) {
				add(fill[i])
			}
		}
		id := fmt.Sprintf("%s-c%02d", g.id(), c)
		text := b.String()
		chunks = append(chunks, Chunk{ID: id, Text: text, Tokens: g.cfg.Count(text + "\n\n")})
	}
	return chunks, needles, nil
}

func (g *gen) id() string { return g.curID }

func (g *gen) example(i int) (Example, error) {
	c := g.cfg
	g.curID = fmt.Sprintf("%s-%d-%05d", c.IDPrefix, c.Seed, i)
	ex := Example{QueryID: g.curID, Task: c.Task, ValueType: c.ValueType, Haystack: c.Haystack, Seed: c.Seed,
		Index: i, TargetTokens: c.ContextTokens, MaxNewTokens: c.MaxNewTokens}
	var err error
	switch c.Task {
	case TaskVT, TaskVTDistractor:
		ex.ValueType = ValueNumbers
		err = g.vt(&ex)
	case TaskMultiHop:
		ex.ValueType = ValueNumbers
		err = g.multihop(&ex)
	default:
		err = g.niah(&ex)
	}
	if err != nil {
		return ex, err
	}
	for _, ch := range ex.Chunks {
		ex.ContextTokens += ch.Tokens
	}
	if ex.MaxNewTokens == 0 {
		// A reference is at most about ten tokens (a UUID) plus its separator.
		ex.MaxNewTokens = max(32, 12*len(ex.Answers)+8)
	}
	return ex, nil
}

func (g *gen) niah(ex *Example) error {
	c := g.cfg
	vt := c.ValueType
	nq, nv, nd := 1, 1, 0
	switch c.Task {
	case TaskNIAHMultiKey:
		nd = c.NumDistractors
	case TaskNIAHMultiValue:
		nv = c.NumValues
	case TaskNIAHMultiQuery:
		nq, nd = c.NumQueries, c.NumDistractors
	}
	used := map[string]bool{}
	keys, err := g.keys(nq+nd, used)
	if err != nil {
		return err
	}
	var filler func() string
	var fillKeys []string
	if c.Haystack == HaystackNeedle {
		if fillKeys, err = g.keys(8, used); err != nil {
			return err
		}
	}
	if c.Haystack == HaystackText {
		filler = g.textFiller()
	}
	var ins []insert
	for i, k := range keys {
		role, reps := RoleAnswer, nv
		if i >= nq {
			role, reps = RoleDistractor, 1
		}
		for range reps {
			v, err := g.fresh(vt, used)
			if err != nil {
				return err
			}
			ins = append(ins, insert{chunk: -1, n: Needle{Text: needleText(vt, k, v), Key: k, Value: v, Role: role}})
		}
	}
	g.rng.Shuffle(len(ins), func(i, j int) { ins[i], ins[j] = ins[j], ins[i] })
	n := g.nChunks()
	if err := g.place(ins, n); err != nil {
		return err
	}
	if fillKeys != nil {
		// Filler values must never equal an answer, or the answer would be in a distractor.
		filler = func() string {
			for {
				v := g.value(vt)
				if !used[v] {
					return needleText(vt, fillKeys[g.rng.IntN(len(fillKeys))], v)
				}
			}
		}
	}
	ex.Chunks, ex.Needles, err = g.layout(ins, n, filler)
	if err != nil {
		return err
	}
	// References in query order, and per key in order of appearance.
	for _, k := range keys[:nq] {
		for _, nd := range ex.Needles {
			if nd.Key == k && nd.Role == RoleAnswer {
				ex.Answers = append(ex.Answers, nd.Value)
			}
		}
	}
	q := keys[0]
	if nq > 1 {
		q = strings.Join(keys[:nq-1], ", ") + " and " + keys[nq-1]
	}
	ex.Question = fmt.Sprintf(fmtNIAHQuestion, vt, q)
	return nil
}

var vtForbidden = strings.ToLower(strings.Join(noiseSentences, " ") +
	" Find all variables that are assigned the value in the text above. VAR Question Answer")

func (g *gen) varName(used map[string]bool) string {
	for {
		b := []byte{byte('A' + g.rng.IntN(26)), byte('A' + g.rng.IntN(26)), byte('A' + g.rng.IntN(26))}
		// A name that is a case-insensitive substring of the haystack or question ("THE",
		// "SKY") would be matched by string_match_all without being retrieved.
		if s := string(b); !used[s] && !strings.Contains(vtForbidden, strings.ToLower(s)) {
			used[s] = true
			return s
		}
	}
}

func (g *gen) vt(ex *Example) error {
	c := g.cfg
	n := g.nChunks()
	usedNames, usedVals := map[string]bool{}, map[string]bool{}
	var chains [][]insert
	var asked []string
	var askedVal string
	for ci := 0; ci <= c.NumDistractors; ci++ {
		val, err := g.fresh(ValueNumbers, usedVals)
		if err != nil {
			return err
		}
		names := make([]string, c.ChainLength)
		for i := range names {
			names[i] = g.varName(usedNames)
		}
		// Spread the chain over distinct chunks in order, so that resolving it needs
		// attention across chunk boundaries; with fewer chunks than links, at least the
		// first and last links are in different chunks.
		var cs []int
		if n >= len(names) {
			cs = g.rng.Perm(n)[:len(names)]
		} else {
			cs = make([]int, len(names))
			for i := range cs {
				cs[i] = g.rng.IntN(n)
			}
		}
		sort.Ints(cs)
		if n > 1 && cs[0] == cs[len(cs)-1] {
			cs[0], cs[len(cs)-1] = 0, n-1
		}
		role := RoleChain
		if ci > 0 {
			role = RoleDistractor
		}
		links := make([]insert, len(names))
		for i, name := range names {
			text := fmt.Sprintf(fmtVTFirst, name, val)
			if i > 0 {
				text = fmt.Sprintf(fmtVTLink, name, names[i-1])
			}
			links[i] = insert{chunk: cs[i], n: Needle{Text: text, Key: name, Value: val, Role: role}}
		}
		chains = append(chains, links)
		if ci == 0 {
			asked, askedVal = names, val
		}
	}
	// Links of different chains that share a chunk come in random order: appended chain by
	// chain, the asked chain would always come first, and a model could name the first
	// variable assigned a number instead of matching the asked value (73% right at 8 chunks).
	ins := g.interleave(chains)
	// Stable by chunk keeps each chain's links in order inside a chunk.
	sort.SliceStable(ins, func(i, j int) bool { return ins[i].chunk < ins[j].chunk })
	for _, in := range ins {
		if g.cost(in.n.Text) > c.ChunkTokens {
			return fmt.Errorf("chunk_tokens %d too small for %q", c.ChunkTokens, in.n.Text)
		}
	}
	var err error
	ex.Chunks, ex.Needles, err = g.layout(ins, n, nil)
	if err != nil {
		return err
	}
	ex.Answers = asked
	ex.Question = fmt.Sprintf(fmtVTQuestion, askedVal)
	return nil
}

// interleave merges the chains into one list in a uniformly random interleaving that keeps
// each chain's own order: the next item comes from a chain with probability proportional to
// what that chain has left.
func (g *gen) interleave(chains [][]insert) []insert {
	left := 0
	for _, ch := range chains {
		left += len(ch)
	}
	out := make([]insert, 0, left)
	next := make([]int, len(chains))
	for ; left > 0; left-- {
		r := g.rng.IntN(left)
		for ci, ch := range chains {
			if rest := len(ch) - next[ci]; r >= rest {
				r -= rest
				continue
			}
			out = append(out, ch[next[ci]])
			next[ci]++
			break
		}
	}
	return out
}

func (g *gen) multihop(ex *Example) error {
	c := g.cfg
	n := g.nChunks()
	used := map[string]bool{}
	pairs := 1 + c.NumDistractors
	ks, err := g.keys(2*pairs, used)
	if err != nil {
		return err
	}
	people, friends := ks[:pairs], ks[pairs:]
	usedVals := map[string]bool{}
	var ins []insert
	var answer string
	for i := range pairs {
		v, err := g.fresh(ValueNumbers, usedVals)
		if err != nil {
			return err
		}
		cs := g.rng.Perm(n)[:2]
		role := RoleFact
		if i > 0 {
			role = RoleDistractor
		}
		ins = append(ins,
			insert{chunk: cs[0], n: Needle{Text: fmt.Sprintf(fmtFriend, people[i], friends[i]), Key: people[i], Value: friends[i], Role: role}},
			insert{chunk: cs[1], n: Needle{Text: needleText(ValueNumbers, friends[i], v), Key: friends[i], Value: v, Role: role}})
		if i == 0 {
			answer = v
		}
	}
	g.rng.Shuffle(len(ins), func(i, j int) { ins[i], ins[j] = ins[j], ins[i] })
	ex.Chunks, ex.Needles, err = g.layout(ins, n, nil)
	if err != nil {
		return err
	}
	ex.Answers = []string{answer}
	ex.Question = fmt.Sprintf(fmtMultiHopQuest, people[0])
	return nil
}
