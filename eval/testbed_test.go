package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"cacheclip/loader"
	"cacheclip/model"
	"cacheclip/model/tokenizer"
)

// The test-bed pair (testdata/testbed) is trained by tools/testbed/train.py, which writes, with
// every export, samples of its training data and the logits of the exported weights on one
// fixed input. These tests hold the Go side to both: evaluation sets in the formats the models
// learnt, and an engine that computes what PyTorch computed.

const testbedDir = "../testdata/testbed"

var pyTask = map[string]string{
	"single": TaskNIAHSingle, "multikey": TaskNIAHMultiKey, "multivalue": TaskNIAHMultiValue,
	"multiquery": TaskNIAHMultiQuery, "vt": TaskVT, "multihop": TaskMultiHop,
}

// formatRE turns one of the generator's Printf formats into an anchored regexp whose %s
// verbs capture the given sub-patterns.
func formatRE(format string, parts ...string) *regexp.Regexp {
	q := regexp.QuoteMeta(format)
	for _, p := range parts {
		q = strings.Replace(q, "%s", "("+p+")", 1)
	}
	return regexp.MustCompile("^" + q + "$")
}

type formatChecker struct {
	word, value, varName            string
	needle, vtFirst, vtLink, friend *regexp.Regexp
	questions                       map[string]*regexp.Regexp
}

func newFormatChecker() *formatChecker {
	word := strings.Join(Words(), "|")
	value := `[0-9]{5}|[0-9a-f]{4}-[0-9a-f]{4}|` + word
	vn := `[A-Z]{3}`
	keys := `(?:` + word + `)(?:, (?:` + word + `))*(?: and (?:` + word + `))?`
	return &formatChecker{
		word: word, value: value, varName: vn,
		needle:  formatRE(fmtNeedle, "numbers|words|uuids", word, value),
		vtFirst: formatRE(fmtVTFirst, vn, `[0-9]{5}`),
		vtLink:  formatRE(fmtVTLink, vn, vn),
		friend:  formatRE(fmtFriend, word, word),
		questions: map[string]*regexp.Regexp{
			TaskNIAHSingle:     formatRE(fmtNIAHQuestion, "numbers|words|uuids", word),
			TaskNIAHMultiKey:   formatRE(fmtNIAHQuestion, "numbers|words|uuids", word),
			TaskNIAHMultiValue: formatRE(fmtNIAHQuestion, "numbers|words|uuids", word),
			TaskNIAHMultiQuery: formatRE(fmtNIAHQuestion, "numbers|words|uuids", keys),
			TaskVT:             formatRE(fmtVTQuestion, `[0-9]{5}`),
			TaskVTDistractor:   formatRE(fmtVTQuestion, `[0-9]{5}`),
			TaskMultiHop:       formatRE(fmtMultiHopQuest, word),
		},
	}
}

var sentenceRE = regexp.MustCompile(`[^ ][^.]*\.`)

// check reports the first way one example departs from the generator's formats.
func (f *formatChecker) check(task string, chunks []string, question, answer string) error {
	noise := map[string]bool{}
	for _, s := range noiseSentences {
		noise[s] = true
	}
	for i, c := range chunks {
		if rest := strings.TrimSpace(sentenceRE.ReplaceAllString(c, "")); rest != "" {
			return fmt.Errorf("chunk %d: text outside sentences: %q", i, rest)
		}
		for _, s := range sentenceRE.FindAllString(c, -1) {
			if !noise[s] && !f.needle.MatchString(s) && !f.vtFirst.MatchString(s) && !f.vtLink.MatchString(s) && !f.friend.MatchString(s) {
				return fmt.Errorf("chunk %d: sentence %q has no generator format", i, s)
			}
		}
	}
	qre := f.questions[task]
	if qre == nil || !qre.MatchString(question) {
		return fmt.Errorf("question %q does not match the %s format", question, task)
	}
	ansRE := regexp.MustCompile("^(?:" + f.value + ")$")
	if IsVT(task) {
		ansRE = regexp.MustCompile("^" + f.varName + "$")
	}
	for _, a := range strings.Split(answer, AnswerSeparator) {
		if !ansRE.MatchString(a) {
			return fmt.Errorf("answer item %q of %q does not match the %s value format", a, answer, task)
		}
		if !strings.Contains(strings.Join(chunks, " "), a) {
			return fmt.Errorf("answer item %q not in the chunks", a)
		}
	}
	return nil
}

func TestTestbedSamplesFollowGeneratorFormats(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testbedDir, "train_samples.json"))
	if err != nil {
		t.Fatalf("test-bed training samples (written by tools/testbed/train.py): %v", err)
	}
	var samples []struct {
		Task     string   `json:"task"`
		Chunks   []string `json:"chunks"`
		Question string   `json:"question"`
		Answer   string   `json:"answer"`
	}
	if err := json.Unmarshal(b, &samples); err != nil {
		t.Fatalf("train_samples.json: %v", err)
	}
	f := newFormatChecker()
	seen := map[string]bool{}
	for i, s := range samples {
		task, ok := pyTask[s.Task]
		if !ok {
			t.Fatalf("sample %d: unknown training task %q", i, s.Task)
		}
		seen[task] = true
		if task == TaskVT {
			// Training's vt draws one or more chains: the formats of both Go vt tasks.
			seen[TaskVTDistractor] = true
		}
		if err := f.check(task, s.Chunks, s.Question, s.Answer); err != nil {
			t.Errorf("training sample %d (%s): %v", i, s.Task, err)
		}
	}
	if len(seen) != len(Tasks) {
		t.Errorf("samples cover %d of %d tasks", len(seen), len(Tasks))
	}
	// The same checker accepts what Generate writes, so it is not vacuous on either side.
	for _, task := range Tasks {
		for _, vt := range []string{ValueNumbers, ValueWords, ValueUUIDs} {
			exs, err := Generate(context.Background(), Config{Task: task, N: 4, Seed: 1, ContextTokens: 512, ChunkTokens: 128, ValueType: vt})
			if err != nil {
				t.Fatal(err)
			}
			for _, ex := range exs {
				var chunks []string
				for _, c := range ex.Chunks {
					chunks = append(chunks, c.Text)
				}
				if err := f.check(task, chunks, ex.Question, strings.Join(ex.Answers, AnswerSeparator)); err != nil {
					t.Errorf("generated %s: %v", ex.QueryID, err)
				}
			}
		}
	}
	// And it rejects a departure.
	if err := f.check(TaskNIAHSingle, []string{"One of the special magic numbers for apple is 12345."}, "What are all the special magic numbers for apple mentioned in the provided text?", "12345"); err == nil {
		t.Error("a needle without its colon passed the format check")
	}
}

func TestTestbedEngineMatchesTraining(t *testing.T) {
	for _, name := range []string{"primary", "aux"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(testbedDir, name)
			b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
			if err != nil {
				t.Fatalf("reference logits (written by tools/testbed/train.py): %v", err)
			}
			var ref struct {
				IDs    []int32     `json:"ids"`
				Rows   []int       `json:"rows"`
				Logits [][]float32 `json:"logits"`
			}
			if err := json.Unmarshal(b, &ref); err != nil {
				t.Fatalf("%s/reference.json: %v", dir, err)
			}
			m, err := model.LoadDir(dir)
			if err != nil {
				t.Fatalf("load %s: %v", dir, err)
			}
			defer m.Close()
			c := m.HostCache(len(ref.IDs))
			first, _ := c.Alloc(len(ref.IDs))
			s := &model.Seq{Cache: c, Tokens: ref.IDs, Logits: ref.Rows}
			for i := range ref.IDs {
				s.Pos = append(s.Pos, int32(i))
				s.Slots = append(s.Slots, int32(first+i))
			}
			out, err := m.Forward(context.Background(), []*model.Seq{s})
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i, row := range ref.Rows {
				got, want := out[0].Logits[i], ref.Logits[i]
				if len(got) != len(want) {
					t.Fatalf("row %d: %d logits, PyTorch %d", row, len(got), len(want))
				}
				for j := range want {
					worst = math.Max(worst, math.Abs(float64(got[j]-want[j])))
				}
			}
			t.Logf("%s: largest logit difference from PyTorch %.2e over %d rows", name, worst, len(ref.Rows))
			// float32 throughout on both sides; only summation order differs.
			if worst > 2e-3 {
				t.Fatalf("largest logit difference from PyTorch %.2e", worst)
			}
		})
	}
}

func loadTestbedTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(testbedDir, "primary"))
	if err != nil {
		t.Fatalf("test-bed tokenizer: %v", err)
	}
	return tok
}

// The project's tokenizer reads the test-bed tokenizer.json as the training script's own
// BPE encoded the training data (tools/testbed/tokref.py wrote the ids).
func TestTestbedTokenizerMatchesTraining(t *testing.T) {
	tok := loadTestbedTokenizer(t)
	b, err := os.ReadFile(filepath.Join(testbedDir, "tokenizer_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		BOS   int32 `json:"bos_id"`
		EOS   int32 `json:"eos_id"`
		Cases []struct {
			Text string  `json:"text"`
			IDs  []int32 `json:"ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if sp := tok.Special(); sp.BOS != ref.BOS || sp.EOS != ref.EOS {
		t.Fatalf("special ids BOS %d EOS %d, training %d %d", sp.BOS, sp.EOS, ref.BOS, ref.EOS)
	}
	if len(ref.Cases) < 10 {
		t.Fatalf("only %d reference cases", len(ref.Cases))
	}
	for i, c := range ref.Cases {
		enc, err := tok.Encode(c.Text, tokenizer.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(enc.IDs, c.IDs) {
			t.Errorf("case %d %q: ids %v, training %v", i, c.Text, enc.IDs, c.IDs)
		}
	}
}

// Generated sets hit their target lengths in the test-bed tokenizer's tokens.
func TestGenerateWithTestbedTokenizer(t *testing.T) {
	tok := loadTestbedTokenizer(t)
	count := func(s string) int {
		enc, err := tok.Encode(s, tokenizer.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(enc.IDs)
	}
	for _, task := range Tasks {
		exs, err := Generate(context.Background(), Config{Task: task, N: 3, Seed: 2, ContextTokens: 1024, ChunkTokens: 128, Count: count})
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range exs {
			if len(ex.Chunks) != 8 || ex.ContextTokens < 1024*9/10 || ex.ContextTokens > 1024*11/10 {
				t.Errorf("%s: %d chunks, %d tokens; want 8 chunks, 1024 ± 10%%", ex.QueryID, len(ex.Chunks), ex.ContextTokens)
			}
		}
	}
}

// The runner lays a training sample's text out to exactly the ids the model was trained on
// (train.py writes them next to the sample): BOS, each chunk with its separator, the question.
// A departure here (a missing BOS, another separator) silently costs every score.
func TestTestbedLayoutMatchesTraining(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testbedDir, "train_samples.json"))
	if err != nil {
		t.Fatal(err)
	}
	var samples []struct {
		Task      string   `json:"task"`
		Chunks    []string `json:"chunks"`
		Question  string   `json:"question"`
		PromptIDs []int32  `json:"prompt_ids"`
	}
	if err := json.Unmarshal(b, &samples); err != nil {
		t.Fatal(err)
	}
	bundle, err := loader.Open(filepath.Join(testbedDir, "primary"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer bundle.Close()
	for i, s := range samples {
		if len(s.PromptIDs) == 0 {
			t.Fatalf("sample %d has no prompt_ids: train_samples.json predates them", i)
		}
		lay, err := bundle.Layout(s.Chunks, s.Question)
		if err != nil {
			t.Fatal(err)
		}
		got := append([]int32(nil), lay.Prefix.IDs...)
		for _, c := range lay.Chunks {
			got = append(got, c.IDs...)
		}
		got = append(got, lay.Question.IDs...)
		if !reflect.DeepEqual(got, s.PromptIDs) {
			n := 0
			for n < min(len(got), len(s.PromptIDs)) && got[n] == s.PromptIDs[n] {
				n++
			}
			t.Errorf("sample %d (%s): %d prompt ids, training %d; first difference at %d (got %v, training %v)",
				i, s.Task, len(got), len(s.PromptIDs), n, got[n:min(len(got), n+5)], s.PromptIDs[n:min(len(s.PromptIDs), n+5)])
		}
	}
}
