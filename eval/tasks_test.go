package eval

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// quarterBytes is a counter that is not additive over sentences (unlike ApproxTokens), so
// the generator's length targeting is tested against a tokenizer it cannot predict exactly.
func quarterBytes(s string) int { return (len(s) + 3) / 4 }

type genCase struct {
	name string
	cfg  Config
}

func genCases() []genCase {
	var cs []genCase
	for _, task := range Tasks {
		for _, vt := range []string{ValueNumbers, ValueWords, ValueUUIDs} {
			if (IsVT(task) || task == TaskMultiHop) && vt != ValueNumbers {
				continue
			}
			for _, hs := range []string{HaystackNoise, HaystackNeedle} {
				if hs == HaystackNeedle && !strings.HasPrefix(task, "niah") {
					continue
				}
				for _, sz := range [][2]int{{1024, 128}, {2048, 256}, {512, 64}} {
					if hs == HaystackNeedle && sz[1] < 128 {
						// Three 20-token filler needles per chunk cannot meet a 10% tolerance.
						continue
					}
					cs = append(cs, genCase{
						name: fmt.Sprintf("%s/%s/%s/%d-%d", task, vt, hs, sz[0], sz[1]),
						cfg:  Config{Task: task, N: 6, Seed: 7, ContextTokens: sz[0], ChunkTokens: sz[1], ValueType: vt, Haystack: hs},
					})
				}
			}
		}
	}
	return cs
}

func context1(ex Example) string {
	var b strings.Builder
	for _, c := range ex.Chunks {
		b.WriteString(c.Text)
		b.WriteString("\n\n")
	}
	return b.String()
}

func TestNeedlesWhereStated(t *testing.T) {
	for _, tc := range genCases() {
		t.Run(tc.name, func(t *testing.T) {
			exs, err := Generate(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, ex := range exs {
				if len(ex.Needles) == 0 {
					t.Fatalf("%s: no needles", ex.QueryID)
				}
				all := context1(ex)
				for _, nd := range ex.Needles {
					if nd.Chunk < 0 || nd.Chunk >= len(ex.Chunks) {
						t.Fatalf("%s: needle %q in chunk %d of %d", ex.QueryID, nd.Text, nd.Chunk, len(ex.Chunks))
					}
					txt := ex.Chunks[nd.Chunk].Text
					if nd.Offset < 0 || nd.Offset+len(nd.Text) > len(txt) || txt[nd.Offset:nd.Offset+len(nd.Text)] != nd.Text {
						t.Fatalf("%s: needle %q not at chunk %d offset %d", ex.QueryID, nd.Text, nd.Chunk, nd.Offset)
					}
					if nd.Offset > 0 && txt[nd.Offset-1] != ' ' {
						t.Fatalf("%s: needle %q does not start a sentence", ex.QueryID, nd.Text)
					}
					if n := strings.Count(all, nd.Text); n != 1 {
						t.Fatalf("%s: needle %q occurs %d times in the context", ex.QueryID, nd.Text, n)
					}
					// A vt link after the first names the previous variable, not the value.
					hasValue := strings.Contains(nd.Text, nd.Value) || IsVT(ex.Task) && strings.Contains(nd.Text, " = VAR ")
					if !hasValue || !strings.Contains(nd.Text, nd.Key) {
						t.Fatalf("%s: needle %q lacks its key %q or value %q", ex.QueryID, nd.Text, nd.Key, nd.Value)
					}
				}
				// The rows carry the same positions.
				qs, _ := Rows([]Example{ex})
				for i, nd := range ex.Needles {
					if qs[0].NeedleChunkIDs[i] != ex.Chunks[nd.Chunk].ID || int(qs[0].NeedleOffsets[i]) != nd.Offset || qs[0].NeedleRoles[i] != nd.Role {
						t.Fatalf("%s: row metadata of needle %d disagrees", ex.QueryID, i)
					}
				}
			}
		})
	}
}

func TestLengthsWithinTolerance(t *testing.T) {
	for _, count := range []struct {
		name string
		f    TokenCounter
	}{{"approx", ApproxTokens}, {"quarter-bytes", quarterBytes}} {
		for _, tc := range genCases() {
			t.Run(count.name+"/"+tc.name, func(t *testing.T) {
				cfg := tc.cfg
				cfg.Count = count.f
				exs, err := Generate(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				wantChunks := cfg.ContextTokens / cfg.ChunkTokens
				for _, ex := range exs {
					if len(ex.Chunks) != wantChunks {
						t.Fatalf("%s: %d chunks, want %d", ex.QueryID, len(ex.Chunks), wantChunks)
					}
					sum := 0
					for _, c := range ex.Chunks {
						if got := count.f(c.Text + "\n\n"); got != c.Tokens {
							t.Fatalf("%s: chunk %s says %d tokens, counter gives %d", ex.QueryID, c.ID, c.Tokens, got)
						}
						// A chunk may miss its target by about one haystack sentence, and the
						// counter's non-additivity by a few tokens.
						if d := c.Tokens - cfg.ChunkTokens; d > cfg.ChunkTokens/8+4 || d < -cfg.ChunkTokens/8-4 {
							t.Fatalf("%s: chunk %s has %d tokens, target %d", ex.QueryID, c.ID, c.Tokens, cfg.ChunkTokens)
						}
						sum += c.Tokens
					}
					if sum != ex.ContextTokens {
						t.Fatalf("%s: context_tokens %d, chunks sum to %d", ex.QueryID, ex.ContextTokens, sum)
					}
					tol := cfg.ContextTokens / 10
					if d := ex.ContextTokens - cfg.ContextTokens; d > tol || d < -tol {
						t.Fatalf("%s: %d context tokens, target %d ± %d", ex.QueryID, ex.ContextTokens, cfg.ContextTokens, tol)
					}
				}
			})
		}
	}
}

func TestAnswerOnlyFromContext(t *testing.T) {
	for _, tc := range genCases() {
		t.Run(tc.name, func(t *testing.T) {
			exs, err := Generate(context.Background(), tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, ex := range exs {
				if len(ex.Answers) == 0 {
					t.Fatalf("%s: no answers", ex.QueryID)
				}
				all := strings.ToLower(context1(ex))
				// Without the needles that carry it, no answer is in the context: the needle is
				// the only source, and a haystack or a distractor never gives it away.
				stripped := all
				for _, nd := range ex.Needles {
					if nd.Role != RoleDistractor {
						stripped = strings.Replace(stripped, strings.ToLower(nd.Text), "", 1)
					}
				}
				for _, a := range ex.Answers {
					la := strings.ToLower(a)
					if !strings.Contains(all, la) {
						t.Fatalf("%s: answer %q not in the context", ex.QueryID, a)
					}
					if strings.Contains(strings.ToLower(ex.Question), la) {
						t.Fatalf("%s: answer %q is in the question %q", ex.QueryID, a, ex.Question)
					}
					if strings.Contains(stripped, la) {
						t.Fatalf("%s: answer %q is in the context outside its needles", ex.QueryID, a)
					}
				}
				switch ex.Task {
				case TaskVT, TaskVTDistractor, TaskMultiHop:
				default:
					// Every answer is the value of an answer needle whose key is asked; no
					// distractor's key is asked.
					for _, nd := range ex.Needles {
						asked := regexp.MustCompile(`\b` + nd.Key + `\b`).MatchString(ex.Question)
						if asked != (nd.Role == RoleAnswer) {
							t.Fatalf("%s: needle %q role %s but asked=%v in %q", ex.QueryID, nd.Text, nd.Role, asked, ex.Question)
						}
					}
					want := map[string]bool{}
					for _, nd := range ex.Needles {
						if nd.Role == RoleAnswer {
							want[nd.Value] = true
						}
					}
					if len(want) != len(ex.Answers) {
						t.Fatalf("%s: %d answer needles, %d answers", ex.QueryID, len(want), len(ex.Answers))
					}
					for _, a := range ex.Answers {
						if !want[a] {
							t.Fatalf("%s: answer %q has no needle", ex.QueryID, a)
						}
					}
				}
			}
		})
	}
}

func TestVTChainCrossesChunks(t *testing.T) {
	for _, tc := range []struct {
		task              string
		ctx, chunk, chain int
		distinct          bool // enough chunks for one link per chunk
		distractors       int  // distractor chains
	}{
		{TaskVT, 1024, 128, 4, true, 0},
		{TaskVT, 1024, 128, 8, true, 0},
		{TaskVT, 512, 128, 6, false, 0},
		{TaskVTDistractor, 1024, 128, 4, true, 1},
		{TaskVTDistractor, 256, 128, 3, false, 1},
		{TaskVTDistractor, 4096, 512, 5, true, 1},
	} {
		t.Run(fmt.Sprintf("%s-%d-%d-chain%d", tc.task, tc.ctx, tc.chunk, tc.chain), func(t *testing.T) {
			exs, err := Generate(context.Background(), Config{Task: tc.task, N: 20, Seed: 3, ContextTokens: tc.ctx, ChunkTokens: tc.chunk, ChainLength: tc.chain})
			if err != nil {
				t.Fatal(err)
			}
			for _, ex := range exs {
				var chain []Needle
				for _, nd := range ex.Needles {
					if nd.Role == RoleChain {
						chain = append(chain, nd)
					}
				}
				if len(chain) != tc.chain || !reflect.DeepEqual(ex.Answers, names(chain)) {
					t.Fatalf("%s: chain %v, answers %v", ex.QueryID, names(chain), ex.Answers)
				}
				val := chain[0].Value
				if chain[0].Text != "VAR "+chain[0].Key+" = "+val+"." || !strings.Contains(ex.Question, " "+val+" ") {
					t.Fatalf("%s: chain starts with %q, question %q", ex.QueryID, chain[0].Text, ex.Question)
				}
				chunks := map[int]bool{chain[0].Chunk: true}
				for i := 1; i < len(chain); i++ {
					if chain[i].Text != "VAR "+chain[i].Key+" = VAR "+chain[i-1].Key+"." {
						t.Fatalf("%s: link %d is %q", ex.QueryID, i, chain[i].Text)
					}
					prev, cur := chain[i-1], chain[i]
					if cur.Chunk < prev.Chunk || (cur.Chunk == prev.Chunk && cur.Offset <= prev.Offset) {
						t.Fatalf("%s: link %d precedes link %d", ex.QueryID, i, i-1)
					}
					chunks[cur.Chunk] = true
				}
				if len(chunks) < 2 {
					t.Fatalf("%s: the chain stays in chunk %d", ex.QueryID, chain[0].Chunk)
				}
				if tc.distinct && len(chunks) != len(chain) {
					t.Fatalf("%s: %d links in %d chunks, want one per chunk", ex.QueryID, len(chain), len(chunks))
				}
				// A distractor chain has another value, so its variables are not answers.
				values := map[string]bool{}
				for _, nd := range ex.Needles {
					if nd.Role == RoleDistractor && nd.Value == val {
						t.Fatalf("%s: distractor chain shares value %s", ex.QueryID, val)
					}
					values[nd.Value] = true
				}
				if len(values) != 1+tc.distractors || len(ex.Needles) != tc.chain*(1+tc.distractors) {
					t.Fatalf("%s: %d needles with %d values, want %d chains of %d", ex.QueryID, len(ex.Needles), len(values), 1+tc.distractors, tc.chain)
				}
			}
		})
	}
}

// TestVTAskedChainNotFirst: which chain is asked must not show in the layout. Where links of
// the asked and the distractor chain share a chunk, either may come first; overall the asked
// chain's numeric assignment comes first in about half the examples.
func TestVTAskedChainNotFirst(t *testing.T) {
	exs, err := Generate(context.Background(), Config{Task: TaskVTDistractor, N: 600, Seed: 11, ContextTokens: 1024, ChunkTokens: 128})
	if err != nil {
		t.Fatal(err)
	}
	first, shared, sharedFirst := 0, 0, 0
	for _, ex := range exs {
		var asked, other Needle
		for _, nd := range ex.Needles {
			if !strings.Contains(nd.Text, "= VAR") {
				if nd.Role == RoleChain {
					asked = nd
				} else {
					other = nd
				}
			}
		}
		before := asked.Chunk < other.Chunk || (asked.Chunk == other.Chunk && asked.Offset < other.Offset)
		if before {
			first++
		}
		if asked.Chunk == other.Chunk {
			shared++
			if before {
				sharedFirst++
			}
		}
	}
	if f := float64(first) / float64(len(exs)); f < 0.42 || f > 0.58 {
		t.Errorf("asked chain's value assignment first in %.2f of %d examples, want about half", f, len(exs))
	}
	if shared < 60 {
		t.Fatalf("only %d examples with both assignments in one chunk", shared)
	}
	if f := float64(sharedFirst) / float64(shared); f < 0.35 || f > 0.65 {
		t.Errorf("sharing a chunk, the asked chain's assignment came first in %d of %d", sharedFirst, shared)
	}
}

func names(ns []Needle) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Key)
	}
	return out
}

func TestMultiHopFactsInTwoChunks(t *testing.T) {
	exs, err := Generate(context.Background(), Config{Task: TaskMultiHop, N: 30, Seed: 11, ContextTokens: 1024, ChunkTokens: 128})
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range exs {
		var facts []Needle
		for _, nd := range ex.Needles {
			if nd.Role == RoleFact {
				facts = append(facts, nd)
			}
		}
		if len(facts) != 2 {
			t.Fatalf("%s: %d facts", ex.QueryID, len(facts))
		}
		a, b := facts[0], facts[1]
		if strings.HasPrefix(a.Text, "One of") {
			a, b = b, a
		}
		if a.Chunk == b.Chunk {
			t.Fatalf("%s: both facts in chunk %d", ex.QueryID, a.Chunk)
		}
		// Hop one names the friend, hop two gives the friend's number, and the question names
		// only the person.
		if a.Text != "The friend of "+a.Key+" is "+a.Value+"." || b.Key != a.Value || ex.Answers[0] != b.Value {
			t.Fatalf("%s: facts %q / %q, answer %v", ex.QueryID, a.Text, b.Text, ex.Answers)
		}
		if !strings.Contains(ex.Question, a.Key) || strings.Contains(ex.Question, b.Key) {
			t.Fatalf("%s: question %q", ex.QueryID, ex.Question)
		}
	}
}

func TestDeterministicBySeed(t *testing.T) {
	ctx := context.Background()
	for _, task := range Tasks {
		t.Run(task, func(t *testing.T) {
			cfg := Config{Task: task, N: 5, Seed: 42, ContextTokens: 1024, ChunkTokens: 128}
			a, err := Generate(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := Generate(ctx, cfg)
			if !reflect.DeepEqual(a, b) {
				t.Fatal("same config, different examples")
			}
			// Example i does not depend on how many are asked for.
			cfg.N = 2
			c, _ := Generate(ctx, cfg)
			if !reflect.DeepEqual(a[:2], c) {
				t.Fatal("first examples change with N")
			}
			cfg.N, cfg.Seed = 5, 43
			d, _ := Generate(ctx, cfg)
			for i := range a {
				if reflect.DeepEqual(a[i].Chunks, d[i].Chunks) || a[i].Question == d[i].Question && reflect.DeepEqual(a[i].Answers, d[i].Answers) {
					t.Fatalf("example %d same under seeds 42 and 43", i)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown task", Config{Task: "niah_x", N: 1, ContextTokens: 100, ChunkTokens: 50}, "unknown task"},
		{"no examples", Config{Task: TaskVT, ContextTokens: 100, ChunkTokens: 50}, "n = 0"},
		{"chunk over context", Config{Task: TaskVT, N: 1, ContextTokens: 100, ChunkTokens: 200}, "chunk_tokens"},
		{"bad value type", Config{Task: TaskNIAHSingle, N: 1, ContextTokens: 100, ChunkTokens: 50, ValueType: "dates"}, "value type"},
		{"bad haystack", Config{Task: TaskNIAHSingle, N: 1, ContextTokens: 100, ChunkTokens: 50, Haystack: "essay"}, "haystack"},
		{"multihop one chunk", Config{Task: TaskMultiHop, N: 1, ContextTokens: 100, ChunkTokens: 100}, "at least 2 chunks"},
		{"needles do not fit", Config{Task: TaskNIAHMultiKey, N: 1, ContextTokens: 40, ChunkTokens: 20, NumDistractors: 6}, "too small"},
		{"vt link does not fit", Config{Task: TaskVT, N: 1, ContextTokens: 40, ChunkTokens: 4}, "too small"},
		{"vt with distractors", Config{Task: TaskVT, N: 1, ContextTokens: 100, ChunkTokens: 50, NumDistractors: 1}, "use vt_distractor"},
		{"chain of one", Config{Task: TaskVT, N: 1, ContextTokens: 100, ChunkTokens: 50, ChainLength: 1}, "bad counts"},
		{"negative max_new_tokens", Config{Task: TaskVT, N: 1, ContextTokens: 100, ChunkTokens: 50, MaxNewTokens: -1}, "bad counts"},
		{"too many keys", Config{Task: TaskNIAHMultiKey, N: 1, ContextTokens: 100000, ChunkTokens: 10000, NumDistractors: 400}, "word list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestGenerateCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Generate(ctx, Config{Task: TaskVT, N: 3, ContextTokens: 256, ChunkTokens: 128}); err == nil {
		t.Fatal("cancelled context: no error")
	}
}

func TestWriteDatasetRoundTrip(t *testing.T) {
	ctx := context.Background()
	var exs []Example
	for _, task := range Tasks {
		e, err := Generate(ctx, Config{Task: task, N: 3, Seed: 5, ContextTokens: 512, ChunkTokens: 128})
		if err != nil {
			t.Fatal(err)
		}
		exs = append(exs, e...)
	}
	dir := t.TempDir()
	qp, cp := filepath.Join(dir, "questions.parquet"), filepath.Join(dir, "corpus.parquet")
	if err := WriteDataset(ctx, qp, cp, exs); err != nil {
		t.Fatal(err)
	}
	qs, err := parquet.ReadFile[QuestionRow](qp)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := parquet.ReadFile[CorpusRow](cp)
	if err != nil {
		t.Fatal(err)
	}
	wq, wc := Rows(exs)
	if !reflect.DeepEqual(qs, wq) || !reflect.DeepEqual(cs, wc) {
		t.Fatal("rows read back differ from rows written")
	}
	// Every chunk id a question names is in the corpus, with the text the needle offsets index.
	text := map[string]string{}
	for _, c := range cs {
		text[c.ChunkID] = c.Text
	}
	for i, q := range qs {
		for _, id := range q.ChunkIDs {
			if _, ok := text[id]; !ok {
				t.Fatalf("question %s names missing chunk %s", q.QueryID, id)
			}
		}
		for j, id := range q.NeedleChunkIDs {
			nd := exs[i].Needles[j]
			if !strings.HasPrefix(text[id][q.NeedleOffsets[j]:], nd.Text) {
				t.Fatalf("question %s needle %d not at %s:%d", q.QueryID, j, id, q.NeedleOffsets[j])
			}
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("directory holds %d entries, want the 2 files and no temporaries", len(ents))
	}
	// Writing the same examples twice would duplicate chunk ids in one corpus.
	if err := WriteDataset(ctx, qp, cp, append(exs, exs[0])); err == nil || !strings.Contains(err.Error(), "duplicate chunk_id") {
		t.Fatalf("duplicate chunk ids: error %v", err)
	}
	if err := WriteDataset(ctx, filepath.Join(dir, "missing", "q.parquet"), cp, exs); err == nil {
		t.Fatal("write into a missing directory: no error")
	}
}
