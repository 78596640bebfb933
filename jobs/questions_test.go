package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuestionsStreamsByRowGroup(t *testing.T) {
	dir := t.TempDir()
	const n, perGroup, batch = 20000, 500, 64
	rows := make([]qRow, n)
	for i := range rows {
		rows[i] = qRow{QueryID: sp(fmt.Sprintf("q%06d", i)), Question: sp("why " + fmt.Sprint(i)),
			ChunkIDs: []string{"c1", fmt.Sprintf("c%d", i%100)}, Lang: "en", Score: float64(i)}
	}
	p := writeParquet(t, dir, "q.parquet", rows, perGroup)
	r, err := OpenQuestions(p, QuestionsOptions{BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.NumRows() != n {
		t.Fatalf("NumRows %d", r.NumRows())
	}
	got := 0
	for {
		b, err := r.Next(context.Background())
		if len(b) > batch {
			t.Fatalf("batch of %d > %d", len(b), batch)
		}
		for _, q := range b {
			if q.Err != nil || q.QueryID != fmt.Sprintf("q%06d", got) || q.Row != int64(got) {
				t.Fatalf("row %d: %+v", got, q)
			}
			got++
		}
		if err != nil {
			break
		}
	}
	st := r.Stats()
	if got != n || st.RowsRead != n {
		t.Fatalf("read %d rows (stats %d), want %d", got, st.RowsRead, n)
	}
	if st.RowGroups != n/perGroup {
		t.Errorf("opened %d row groups, want %d", st.RowGroups, n/perGroup)
	}
	if st.MaxBufferRows > batch {
		t.Errorf("held %d rows at once, bound is %d", st.MaxBufferRows, batch)
	}
}

func TestQuestionsPartitionFilter(t *testing.T) {
	dir := t.TempDir()
	rows := make([]qRow, 3000)
	for i := range rows {
		rows[i] = qRow{QueryID: sp(fmt.Sprintf("id-%d", i)), Question: sp("q"), ChunkIDs: []string{"c"}}
	}
	p := writeParquet(t, dir, "q.parquet", rows, 700)
	seen := map[string]int{}
	for i := 0; i < 3; i++ {
		r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 100, Partition: Partition{i, 3}})
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range readAll(t, r) {
			if PartitionOf(q.QueryID, 3) != i {
				t.Fatalf("shard %d got %s", i, q.QueryID)
			}
			seen[q.QueryID]++
		}
		r.Close()
	}
	if len(seen) != 3000 {
		t.Fatalf("shards cover %d ids, want 3000", len(seen))
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("%s read %d times", id, c)
		}
	}
}

func TestQuestionsDecodesFields(t *testing.T) {
	dir := t.TempDir()
	w := int64(7)
	rows := []qRow{
		{QueryID: sp("a"), Question: sp("What?"), ChunkIDs: []string{"c1", "c2", "c3"}, Answers: []string{"x", "y"}, MaxNewTokens: i32p(12), Lang: "de", Score: 0.5, Tags: []string{"t"}, Weight: &w},
		{QueryID: sp("b"), Question: sp("Who?"), ChunkIDs: []string{"c9"}},
	}
	p := writeParquet(t, dir, "q.parquet", rows, 0)
	r, err := OpenQuestions(p, QuestionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	qs := readAll(t, r)
	if len(qs) != 2 {
		t.Fatalf("%d rows", len(qs))
	}
	a := qs[0]
	if a.Err != nil || a.Question != "What?" || strings.Join(a.ChunkIDs, ",") != "c1,c2,c3" ||
		strings.Join(a.Answers, ",") != "x,y" || a.MaxNewTokens != 12 {
		t.Errorf("row a: %+v", a)
	}
	if qs[1].MaxNewTokens != 0 || qs[1].Answers != nil {
		t.Errorf("row b: %+v", qs[1])
	}
	var names []string
	for _, f := range r.PassthroughFields() {
		names = append(names, f.Name())
	}
	if got := strings.Join(names, ","); got != "answers,lang,score,tags,weight" {
		t.Errorf("passthrough = %s", got)
	}
	// Passthrough values start after the fixed output columns.
	for _, v := range a.Passthrough {
		if v.Column() < len(outputColumns) {
			t.Fatalf("passthrough value at column %d", v.Column())
		}
	}
}

// Bad rows: each yields the row with a RowError naming file, row and column.
func TestQuestionsBadRows(t *testing.T) {
	dir := t.TempDir()
	rows := []qRow{
		{QueryID: sp("ok1"), Question: sp("fine"), ChunkIDs: []string{"c"}},
		{QueryID: nil, Question: sp("no id"), ChunkIDs: []string{"c"}},
		{QueryID: sp(""), Question: sp("empty id"), ChunkIDs: []string{"c"}},
		{QueryID: sp("q-null"), Question: nil, ChunkIDs: []string{"c"}},
		{QueryID: sp("q-empty"), Question: sp("  "), ChunkIDs: []string{"c"}},
		{QueryID: sp("no-chunks"), Question: sp("x"), ChunkIDs: nil},
		{QueryID: sp("empty-chunk-id"), Question: sp("x"), ChunkIDs: []string{"c", ""}},
		{QueryID: sp("ok1"), Question: sp("dup"), ChunkIDs: []string{"c"}},
		{QueryID: sp("mnt"), Question: sp("x"), ChunkIDs: []string{"c"}, MaxNewTokens: i32p(-3)},
		{QueryID: sp("ok1"), Question: sp("dup again"), ChunkIDs: []string{"c"}},
	}
	p := writeParquet(t, dir, "bad.parquet", rows, 3)
	r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	qs := readAll(t, r)
	if len(qs) != len(rows) {
		t.Fatalf("got %d rows, want %d: no row may be dropped", len(qs), len(rows))
	}
	want := []struct {
		id, col, msg string
		dup          bool
	}{
		{"ok1", "", "", false},
		{NullQueryIDPrefix + "1", "query_id", "null or empty", false},
		{NullQueryIDPrefix + "2", "query_id", "null or empty", false},
		{"q-null", "question", "question is null", false},
		{"q-empty", "question", "question is empty", false},
		{"no-chunks", "chunk_ids", "null or empty", false},
		{"empty-chunk-id", "chunk_ids", "element 1 is an empty string", false},
		{"ok1", "query_id", "duplicate query_id \"ok1\" (first at row 0)", true},
		{"mnt", "max_new_tokens", "-3", false},
		{"ok1", "query_id", "duplicate", true},
	}
	for i, w := range want {
		q := qs[i]
		if q.QueryID != w.id || q.Row != int64(i) {
			t.Errorf("row %d: id %q row %d, want %q", i, q.QueryID, q.Row, w.id)
		}
		if w.col == "" {
			if q.Err != nil {
				t.Errorf("row %d: unexpected %v", i, q.Err)
			}
			continue
		}
		if q.Err == nil {
			t.Errorf("row %d: no error, want %s", i, w.msg)
			continue
		}
		msg := q.Err.Error()
		if q.Err.Column != w.col || q.Err.Duplicate != w.dup || !strings.Contains(msg, w.msg) ||
			!strings.Contains(msg, "bad.parquet") || !strings.Contains(msg, fmt.Sprintf("row %d", i)) {
			t.Errorf("row %d: %q (col %s dup %v), want col %s containing %q", i, msg, q.Err.Column, q.Err.Duplicate, w.col, w.msg)
		}
	}
	if d := r.Stats().Duplicates; d != 2 {
		t.Errorf("duplicates = %d, want 2", d)
	}
}

type nullElemRow struct {
	QueryID  string    `parquet:"query_id"`
	Question string    `parquet:"question"`
	ChunkIDs []*string `parquet:"chunk_ids,list"`
}

func TestQuestionsNullChunkElement(t *testing.T) {
	p := writeParquet(t, t.TempDir(), "q.parquet", []nullElemRow{
		{"a", "x", []*string{sp("c1"), nil}},
		{"b", "x", []*string{sp("c1")}},
	}, 0)
	r, err := OpenQuestions(p, QuestionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	qs := readAll(t, r)
	if qs[0].Err == nil || !strings.Contains(qs[0].Err.Msg, "element 1 is null") {
		t.Errorf("row 0: %v", qs[0].Err)
	}
	if qs[1].Err != nil || qs[1].ChunkIDs[0] != "c1" {
		t.Errorf("row 1: %+v", qs[1])
	}
}

type (
	missingChunks struct {
		QueryID  string `parquet:"query_id"`
		Question string `parquet:"question"`
	}
	intQueryID struct {
		QueryID  int64    `parquet:"query_id"`
		Question string   `parquet:"question"`
		ChunkIDs []string `parquet:"chunk_ids,list"`
	}
	scalarChunks struct {
		QueryID  string `parquet:"query_id"`
		Question string `parquet:"question"`
		ChunkIDs string `parquet:"chunk_ids"`
	}
	intListChunks struct {
		QueryID  string  `parquet:"query_id"`
		Question string  `parquet:"question"`
		ChunkIDs []int64 `parquet:"chunk_ids,list"`
	}
	floatMNT struct {
		QueryID      string   `parquet:"query_id"`
		Question     string   `parquet:"question"`
		ChunkIDs     []string `parquet:"chunk_ids,list"`
		MaxNewTokens float32  `parquet:"max_new_tokens"`
	}
	reservedName struct {
		QueryID  string   `parquet:"query_id"`
		Question string   `parquet:"question"`
		ChunkIDs []string `parquet:"chunk_ids,list"`
		Status   string   `parquet:"status"`
	}
	int64MNT struct {
		QueryID      string   `parquet:"query_id"`
		Question     string   `parquet:"question"`
		ChunkIDs     []string `parquet:"chunk_ids,list"`
		MaxNewTokens int64    `parquet:"max_new_tokens"`
	}
)

func TestQuestionsSchemaErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeParquet(t, dir, "good.parquet", []qRow{{QueryID: sp("a"), Question: sp("b"), ChunkIDs: []string{"c"}}}, 0)
	raw, _ := os.ReadFile(good)
	truncated := filepath.Join(dir, "truncated.parquet")
	os.WriteFile(truncated, raw[:len(raw)/2], 0o644)
	garbage := filepath.Join(dir, "garbage.parquet")
	os.WriteFile(garbage, []byte(strings.Repeat("not parquet at all ", 20)), 0o644)
	empty := filepath.Join(dir, "empty.parquet")
	os.WriteFile(empty, nil, 0o644)
	badFooter := filepath.Join(dir, "badfooter.parquet")
	bf := append([]byte{}, raw...)
	for i := len(bf) - 40; i < len(bf)-8; i++ {
		bf[i] ^= 0x5a
	}
	os.WriteFile(badFooter, bf, 0o644)

	cases := []struct {
		name, path string
		want       []string
	}{
		{"missing column", writeParquet(t, dir, "m.parquet", []missingChunks{{"a", "b"}}, 0), []string{"m.parquet", "chunk_ids", "missing"}},
		{"int query_id", writeParquet(t, dir, "i.parquet", []intQueryID{{1, "b", []string{"c"}}}, 0), []string{"i.parquet", "query_id", "want string"}},
		{"scalar chunk_ids", writeParquet(t, dir, "s.parquet", []scalarChunks{{"a", "b", "c"}}, 0), []string{"s.parquet", "chunk_ids", "want list<string>"}},
		{"int list chunk_ids", writeParquet(t, dir, "il.parquet", []intListChunks{{"a", "b", []int64{1}}}, 0), []string{"il.parquet", "chunk_ids", "want list<string>"}},
		{"float max_new_tokens", writeParquet(t, dir, "f.parquet", []floatMNT{{"a", "b", []string{"c"}, 1}}, 0), []string{"f.parquet", "max_new_tokens", "want int32 or int64"}},
		{"reserved passthrough", writeParquet(t, dir, "r.parquet", []reservedName{{"a", "b", []string{"c"}, "x"}}, 0), []string{"r.parquet", "status", "output column"}},
		{"truncated", truncated, []string{"truncated.parquet", "not a readable Parquet file"}},
		{"garbage", garbage, []string{"garbage.parquet", "not a readable Parquet file"}},
		{"empty", empty, []string{"empty.parquet", "not a readable Parquet file"}},
		{"bad footer", badFooter, []string{"badfooter.parquet"}},
		{"absent", filepath.Join(dir, "absent.parquet"), []string{"absent.parquet"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := OpenQuestions(c.path, QuestionsOptions{})
			if err == nil {
				// A corruption the footer check can't see must surface on read.
				_, err = r.Next(context.Background())
				r.Close()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !IsConfigError(err) {
				t.Errorf("not a ConfigError: %v", err)
			}
		})
	}
	// int64 max_new_tokens is accepted.
	p := writeParquet(t, dir, "i64.parquet", []int64MNT{{"a", "b", []string{"c"}, 99}}, 0)
	r, err := OpenQuestions(p, QuestionsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qs := readAll(t, r)
	r.Close()
	if qs[0].MaxNewTokens != 99 {
		t.Errorf("int64 max_new_tokens = %d", qs[0].MaxNewTokens)
	}
}

// Corrupting the data pages (not the footer) must give an error naming the
// file, never a panic, and never silently fewer rows.
func TestQuestionsCorruptPages(t *testing.T) {
	dir := t.TempDir()
	rows := make([]qRow, 2000)
	for i := range rows {
		rows[i] = qRow{QueryID: sp(fmt.Sprintf("q%d", i)), Question: sp(strings.Repeat("w", 50)), ChunkIDs: []string{"c"}}
	}
	good := writeParquet(t, dir, "g.parquet", rows, 500)
	raw, _ := os.ReadFile(good)
	for _, off := range []int{8, 200, len(raw) / 3, len(raw) / 2} {
		bad := append([]byte{}, raw...)
		for i := off; i < off+64 && i < len(bad)-8; i++ {
			bad[i] = ^bad[i]
		}
		p := filepath.Join(dir, fmt.Sprintf("c%d.parquet", off))
		os.WriteFile(p, bad, 0o644)
		r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 128})
		if err != nil {
			t.Logf("offset %d: open: %v", off, err)
			if !strings.Contains(err.Error(), p) {
				t.Errorf("offset %d: error lacks file: %v", off, err)
			}
			continue
		}
		n := 0
		for {
			b, err := r.Next(context.Background())
			n += len(b)
			if err != nil {
				t.Logf("offset %d: %d rows then %v", off, n, err)
				if err.Error() != "EOF" && !strings.Contains(err.Error(), p) {
					t.Errorf("offset %d: error lacks file: %v", off, err)
				}
				if err.Error() == "EOF" && n != len(rows) {
					// Corruption inside string bytes decodes as other bytes:
					// the row count must still be exact.
					t.Errorf("offset %d: EOF after %d rows", off, n)
				}
				break
			}
		}
		r.Close()
	}
}

func TestQuestionsContextCancel(t *testing.T) {
	rows := make([]qRow, 100)
	for i := range rows {
		rows[i] = qRow{QueryID: sp(fmt.Sprint(i)), Question: sp("q"), ChunkIDs: []string{"c"}}
	}
	p := writeParquet(t, t.TempDir(), "q.parquet", rows, 10)
	r, _ := OpenQuestions(p, QuestionsOptions{BatchSize: 10})
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Next(ctx); err != context.Canceled {
		t.Errorf("err = %v", err)
	}
}

// Flipping bytes anywhere in a file must give rows or an error naming the
// file, never a panic or a hang.
func TestQuestionsNeverPanicsOnFlippedBytes(t *testing.T) {
	dir := t.TempDir()
	rows := make([]qRow, 40)
	for i := range rows {
		w := int64(i)
		rows[i] = qRow{QueryID: sp(fmt.Sprintf("q%d", i)), Question: sp("q?"), ChunkIDs: []string{"a", "b"},
			Answers: []string{"x"}, MaxNewTokens: i32p(5), Lang: "en", Tags: []string{"t"}, Weight: &w}
	}
	raw, _ := os.ReadFile(writeParquet(t, dir, "g.parquet", rows, 10))
	p := filepath.Join(dir, "flipped.parquet")
	for off := 0; off < len(raw); off += 5 {
		bad := append([]byte{}, raw...)
		bad[off] ^= 0xff
		os.WriteFile(p, bad, 0o644)
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("offset %d: panic %v", off, r)
				}
			}()
			r, err := OpenQuestions(p, QuestionsOptions{BatchSize: 7})
			if err != nil {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("offset %d: %v", off, err)
				}
				return
			}
			defer r.Close()
			for i := 0; i < 100; i++ {
				if _, err := r.Next(context.Background()); err != nil {
					if err.Error() != "EOF" && !strings.Contains(err.Error(), p) {
						t.Errorf("offset %d: %v", off, err)
					}
					return
				}
			}
			t.Errorf("offset %d: no end after 100 batches", off)
		}()
	}
}
