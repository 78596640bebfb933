package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCorpusIndexMatchesInMemory(t *testing.T) {
	dir := t.TempDir()
	rows := make([]cRow, 3000)
	for i := range rows {
		rows[i] = cRow{ChunkID: sp(fmt.Sprintf("chunk-%d", i)), Text: sp(strings.Repeat(fmt.Sprintf("<%d>", i), i%40))}
	}
	rows = append(rows, cRow{ChunkID: sp("chunk-5"), Text: rows[5].Text}) // same text again
	p := writeParquet(t, dir, "corpus.parquet", rows, 256)
	ctx := context.Background()
	mem, err := LoadCorpus(ctx, p, CorpusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idxDir := filepath.Join(dir, "idx")
	ci, err := OpenCorpusIndex(ctx, p, idxDir)
	if err != nil {
		t.Fatal(err)
	}
	if !ci.Built || ci.Len() != mem.Len() || ci.Len() != 3000 {
		t.Fatalf("built %v len %d vs %d", ci.Built, ci.Len(), mem.Len())
	}
	var texts []ChunkTexts = []ChunkTexts{mem, ci}
	for i := 0; i < 3000; i += 7 {
		id := fmt.Sprintf("chunk-%d", i)
		for _, c := range texts {
			if got, ok := c.Text(id); !ok || got != *rows[i].Text {
				t.Fatalf("%T %s = %q, %v", c, id, got, ok)
			}
		}
	}
	for _, id := range []string{"", "chunk-3000", "chunk-", "zzz"} {
		if _, ok := ci.Text(id); ok {
			t.Errorf("found %q", id)
		}
	}
	ci.Close()
	// Reused, not rebuilt.
	ci2, err := OpenCorpusIndex(ctx, p, idxDir)
	if err != nil || ci2.Built {
		t.Fatalf("reopen: built=%v err=%v", ci2 != nil && ci2.Built, err)
	}
	if got, _ := ci2.Text("chunk-77"); got != *rows[77].Text {
		t.Errorf("reopened lookup %q", got)
	}
	ci2.Close()
	// A changed corpus gets a new index.
	later := time.Now().Add(time.Hour)
	os.Chtimes(p, later, later)
	ci3, err := OpenCorpusIndex(ctx, p, idxDir)
	if err != nil || !ci3.Built {
		t.Fatalf("after touch: built=%v err=%v", ci3 != nil && ci3.Built, err)
	}
	ci3.Close()
	// A damaged index is rebuilt.
	idxs, _ := filepath.Glob(filepath.Join(idxDir, "*.idx"))
	for _, f := range idxs {
		os.Truncate(f, 70)
	}
	ci4, err := OpenCorpusIndex(ctx, p, idxDir)
	if err != nil || !ci4.Built {
		t.Fatalf("after damage: built=%v err=%v", ci4 != nil && ci4.Built, err)
	}
	if got, _ := ci4.Text("chunk-2999"); got != *rows[2999].Text {
		t.Errorf("rebuilt lookup %q", got)
	}
	ci4.Close()
	left, _ := filepath.Glob(filepath.Join(idxDir, tmpPrefix+"*"))
	if len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestCorpusIndexErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		rows []cRow
		want []string
	}{
		{"different text", []cRow{{ChunkID: sp("a"), Text: sp("x")}, {ChunkID: sp("b"), Text: sp("y")}, {ChunkID: sp("a"), Text: sp("z")}}, []string{`"a"`, "rows 0 and 2"}},
		{"null text", []cRow{{ChunkID: sp("a")}}, []string{"row 0", "text"}},
		{"null id", []cRow{{ChunkID: sp("a"), Text: sp("x")}, {Text: sp("y")}}, []string{"row 1", "chunk_id"}},
	}
	for i, c := range cases {
		p := writeParquet(t, dir, fmt.Sprintf("c%d.parquet", i), c.rows, 2)
		_, err := OpenCorpusIndex(context.Background(), p, filepath.Join(dir, "idx"))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range append(c.want, p) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.name, err, w)
			}
		}
	}
	// An empty corpus is valid and empty.
	p := writeParquet[cRow](t, dir, "empty.parquet", nil, 0)
	ci, err := OpenCorpusIndex(context.Background(), p, filepath.Join(dir, "idx"))
	if err != nil || ci.Len() != 0 {
		t.Fatalf("empty: %v", err)
	}
	if _, ok := ci.Text("a"); ok {
		t.Error("found in empty")
	}
	ci.Close()
}
