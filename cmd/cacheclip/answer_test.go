package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cacheclip/model/testmodel"
)

func answerFixture(t *testing.T) (primary, aux string, chunks []string) {
	t.Helper()
	root := t.TempDir()
	specs := map[string]testmodel.Spec{}
	for _, s := range testmodel.Variants() {
		specs[s.Name] = s
	}
	primary, aux = filepath.Join(root, "qwen2"), filepath.Join(root, "smollm2")
	if err := testmodel.Write(primary, specs["qwen2"]); err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(aux, specs["smollm2"]); err != nil {
		t.Fatal(err)
	}
	for i, text := range []string{
		"The grass is green and the sky is blue over the little village.",
		"One of the special magic numbers for the key is 7319, remember it.",
	} {
		p := filepath.Join(root, "chunk"+string(rune('a'+i))+".txt")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, p)
	}
	return primary, aux, chunks
}

func runAnswer(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cmdAnswer(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAnswerCommand(t *testing.T) {
	primary, aux, chunks := answerFixture(t)
	base := append([]string{"--model", primary, "--aux", aux, "--max-new-tokens", "6", "--question", "What is the special magic number?", "--chunks"}, chunks...)
	code, full, stderr := runAnswer(append(base, "--method", "full")...)
	if code != 0 {
		t.Fatalf("full: exit %d: %s", code, stderr)
	}
	if !strings.Contains(full, "method full") || !strings.Contains(full, "ttft") {
		t.Fatalf("full: no accounting in %q", full)
	}
	// The answer text, then the generated ids (random models often write blanks).
	answerOf := func(s string) string {
		ids := ""
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "answer ids: ") {
				ids = l
			}
		}
		return strings.SplitN(s, "\nmethod ", 2)[0] + "|" + ids
	}
	if !strings.Contains(answerOf(full), "answer ids: [") {
		t.Fatalf("full: no answer ids in %q", full)
	}
	for _, extra := range [][]string{
		{"--method", "cacheclip", "--ratio", "1"},
		{"--method", "cacheclip", "--ratio", "1", "--method-param", "aux_mode=cached"},
		{"--method", "cacheblend", "--ratio", "1", "--store", t.TempDir()},
	} {
		code, out, stderr := runAnswer(append(base, extra...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, stderr)
		}
		if answerOf(out) != answerOf(full) {
			t.Errorf("%v: answer %q, full gives %q", extra, answerOf(out), answerOf(full))
		}
	}
	code, out, stderr := runAnswer(append(base, "--method", "cacheclip", "--ratio", "0.2")...)
	if code != 0 || !strings.Contains(out, "recomputed") {
		t.Fatalf("cacheclip r=0.2: exit %d: %s %s", code, out, stderr)
	}
	t.Logf("cacheclip r=0.2:\n%s", out)
}

func TestAnswerBadInput(t *testing.T) {
	primary, aux, chunks := answerFixture(t)
	long := filepath.Join(t.TempDir(), "long.txt")
	if err := os.WriteFile(long, bytes.Repeat([]byte("zq7 "), 6000), 0o644); err != nil {
		t.Fatal(err)
	}
	q := []string{"--question", "What?"}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ratio above 1", append([]string{"--model", primary, "--aux", aux, "--ratio", "1.5", "--chunks", chunks[0]}, q...), 2, "ratio: 1.5 is not in [0, 1]"},
		{"ratio below 0", append([]string{"--model", primary, "--aux", aux, "--ratio", "-0.5", "--chunks", chunks[0]}, q...), 2, "ratio: -0.5 is not in [0, 1]"},
		{"no aux for cacheclip", append([]string{"--model", primary, "--chunks", chunks[0]}, q...), 2, "needs an auxiliary model"},
		{"no model", q, 2, "model: required"},
		{"no question", []string{"--model", primary, "--method", "reuse"}, 2, "--question is required"},
		{"unknown method", append([]string{"--model", primary, "--method", "magic"}, q...), 2, `"magic" is not one of`},
		{"batch flag", append([]string{"--model", primary, "--method", "reuse", "--out", "x"}, q...), 2, "not defined: -out"},
		{"missing chunk file", append([]string{"--model", primary, "--method", "reuse", "--chunks", "/nonexistent/x.txt"}, q...), 1, "chunk"},
		{"missing model", append([]string{"--model", "/nonexistent/model", "--method", "reuse"}, q...), 2, "nonexistent"},
		{"context over the limit", append([]string{"--model", primary, "--method", "reuse", "--chunks", long}, q...), 1, "exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runAnswer(c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, c.code, c.want)
			}
		})
	}
}
