package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type cRow struct {
	ChunkID *string `parquet:"chunk_id,optional"`
	Text    *string `parquet:"text,optional"`
	Extra   []byte  `parquet:"embedding"`
}

type cIntText struct {
	ChunkID string `parquet:"chunk_id"`
	Text    int32  `parquet:"text"`
}

type cNoText struct {
	ChunkID string `parquet:"chunk_id"`
}

func TestCorpusLookup(t *testing.T) {
	dir := t.TempDir()
	rows := make([]cRow, 5000)
	for i := range rows {
		rows[i] = cRow{ChunkID: sp(fmt.Sprintf("c%d", i)), Text: sp(strings.Repeat(fmt.Sprint(i%10), i%50)), Extra: []byte{1, 2}}
	}
	rows = append(rows, cRow{ChunkID: sp("c7"), Text: rows[7].Text}) // same text again: fine
	p := writeParquet(t, dir, "corpus.parquet", rows, 333)
	c, err := LoadCorpus(context.Background(), p, CorpusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 5000 {
		t.Fatalf("Len %d", c.Len())
	}
	for _, i := range []int{0, 1, 49, 332, 333, 4999} {
		got, ok := c.Text(fmt.Sprintf("c%d", i))
		if !ok || got != *rows[i].Text {
			t.Errorf("c%d = %q, %v", i, got, ok)
		}
	}
	if _, ok := c.Text("nope"); ok {
		t.Error("unknown id found")
	}
	if c.Bytes() < 5000*CorpusEntryOverhead {
		t.Errorf("Bytes %d", c.Bytes())
	}
}

func TestCorpusErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeParquet(t, dir, "g.parquet", []cRow{{ChunkID: sp("a"), Text: sp("x")}}, 0)
	raw, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "t.parquet")
	os.WriteFile(trunc, raw[:len(raw)-10], 0o644)
	cases := []struct {
		name, path string
		opts       CorpusOptions
		want       []string
	}{
		{"duplicate id, different text", writeParquet(t, dir, "d.parquet", []cRow{
			{ChunkID: sp("a"), Text: sp("x")}, {ChunkID: sp("b"), Text: sp("y")}, {ChunkID: sp("a"), Text: sp("z")}}, 2),
			CorpusOptions{}, []string{"d.parquet", `"a"`, "rows 0 and 2"}},
		{"null id", writeParquet(t, dir, "n.parquet", []cRow{{ChunkID: sp("a"), Text: sp("x")}, {Text: sp("y")}}, 0),
			CorpusOptions{}, []string{"n.parquet", "row 1", "chunk_id"}},
		{"null text", writeParquet(t, dir, "nt.parquet", []cRow{{ChunkID: sp("a")}}, 0),
			CorpusOptions{}, []string{"nt.parquet", "row 0", "text"}},
		{"wrong type", writeParquet(t, dir, "w.parquet", []cIntText{{"a", 1}}, 0), CorpusOptions{}, []string{"w.parquet", "text", "want string"}},
		{"missing column", writeParquet(t, dir, "m.parquet", []cNoText{{"a"}}, 0), CorpusOptions{}, []string{"m.parquet", "text", "missing"}},
		{"over memory bound", good, CorpusOptions{MaxBytes: 10}, []string{"g.parquet", "bytes"}},
		{"truncated", trunc, CorpusOptions{}, []string{"t.parquet", "Parquet"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadCorpus(context.Background(), c.path, c.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}
