//go:build unix

package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cacheclip/eval"
	"cacheclip/internal/cputime"
	"cacheclip/jobs"
	"cacheclip/kernels"
	"cacheclip/loader"
	"cacheclip/model/testmodel"
)

// BenchmarkJobQwen05B is the end-to-end throughput of a batch job on the
// Qwen2.5-0.5B shape (random bf16 weights written as a safetensors model
// directory) with a SmolLM2-135M-shaped auxiliary: 16 questions, each over 8
// chunks of 256 tokens drawn from a corpus of 16, 16 new tokens each (random
// weights never stop early), batch 8, through the real runner (stages,
// shard store, Parquet out). Full prefill and CacheClip at r = 0.2 (the
// full auxiliary, the default aux_mode=cached, and aux_mode=boundary) run alternately in one process; an
// untimed warm-up run builds the primary's shards and the auxiliary's chunk
// caches first, as a shard build would. It reports each run's questions/s,
// its speed-up over full, and where the time went: the load, aux and write
// stages' busy seconds, and from the rows, recompute (assembly and the
// prefill's forward calls) and decode (each batch's decode counted once).
//
//	go test -run '^$' -bench JobQwen05B -benchtime 1x -timeout 60m ./runner/
func BenchmarkJobQwen05B(b *testing.B) {
	const nq, batch, newTokens = 16, 8, 16
	dir := b.TempDir()
	primary, aux := filepath.Join(dir, "primary"), filepath.Join(dir, "aux")
	if err := testmodel.Write(primary, testmodel.Qwen25_05B(kernels.BF16)); err != nil {
		b.Fatal(err)
	}
	if err := testmodel.Write(aux, testmodel.SmolLM2_135M(kernels.BF16)); err != nil {
		b.Fatal(err)
	}
	corpus, questions := writeQwenBenchData(b, dir, primary, nq)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	texts, err := jobs.LoadCorpus(ctx, corpus, jobs.CorpusOptions{})
	if err != nil {
		b.Fatal(err)
	}
	type variant struct {
		name, method string
		params       map[string]string
	}
	variants := []variant{
		{"full", "full", nil},
		{"cacheclip", "cacheclip", map[string]string{"aux_mode": "fresh"}},
		{"cacheclip-cached", "cacheclip", map[string]string{"aux_mode": "cached"}}, // the default mode
		{"cacheclip-boundary", "cacheclip", map[string]string{"aux_mode": "boundary"}},
	}
	run := func(b *testing.B, v variant, out string) (jobs.Stats, time.Duration, time.Duration) {
		spec := jobs.DefaultSpec()
		spec.Questions, spec.Model, spec.Aux = questions, primary, aux
		spec.Store = filepath.Join(dir, "store")
		spec.Out = out
		spec.Method, spec.Ratio, spec.MethodParams = v.method, 0.2, v.params
		spec.MaxNewTokens, spec.BatchSize = newTokens, batch
		eng, err := NewEngine(ctx, spec, log)
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Close()
		t0, c0 := time.Now(), cputime.Process()
		st, err := Run(ctx, Options{Spec: spec, Stages: eng, Corpus: texts, Logger: log})
		if err != nil || st.OK != nq {
			b.Fatalf("%s: run: %v (ok %d of %d)", v.name, err, st.OK, nq)
		}
		return st, time.Since(t0), cputime.Process() - c0
	}
	run(b, variants[2], filepath.Join(dir, "warmup"))
	type row struct {
		PrefillMS float64 `parquet:"prefill_ms"`
		DecodeMS  float64 `parquet:"decode_ms"`
		NContext  int32   `parquet:"n_context_tokens"`
		NGen      int32   `parquet:"n_generated"`
	}
	// Process CPU time is the steadier figure on a shared machine: contention
	// stretches wall time far more than the work done.
	wall, cpu := map[string]time.Duration{}, map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, v := range variants {
			out := filepath.Join(dir, fmt.Sprintf("%s-%d", v.name, i))
			st, w, c := run(b, v, out)
			wall[v.name] += w
			cpu[v.name] += c
			rows, err := eval.ReadParts[row](out)
			if err != nil {
				b.Fatal(err)
			}
			var recompute, decode float64
			for _, r := range rows {
				recompute += r.PrefillMS / 1000
				// Every row of a batch carries its batch's decode time.
				decode += r.DecodeMS / 1000 / batch
				if r.NContext != 8*256 || r.NGen != newTokens {
					b.Fatalf("%s: a row has %d context tokens and %d generated, want %d and %d", v.name, r.NContext, r.NGen, 8*256, newTokens)
				}
			}
			if i == b.N-1 {
				b.ReportMetric(recompute, v.name+"-recompute-s")
				b.ReportMetric(decode, v.name+"-decode-s")
				for _, s := range []string{"load", "aux", "write"} {
					b.ReportMetric(st.StageBusySeconds[s], v.name+"-"+s+"-s")
				}
			}
		}
	}
	for _, v := range variants {
		q := float64(nq*b.N) / wall[v.name].Seconds()
		b.ReportMetric(q, v.name+"-q/s")
		if v.name != "full" {
			b.ReportMetric(float64(wall["full"])/float64(wall[v.name]), v.name+"-x-full")
			b.ReportMetric(float64(cpu["full"])/float64(cpu[v.name]), v.name+"-cpu-x-full")
		}
	}
}

// writeQwenBenchData writes 16 chunks of exactly 256 tokens of the test
// tokenizer (as the primary's layout encodes a chunk) and n questions, each
// over 8 of them.
func writeQwenBenchData(tb testing.TB, dir, primary string, n int) (corpus, questions string) {
	tb.Helper()
	bd, err := loader.Open(primary, "")
	if err != nil {
		tb.Fatal(err)
	}
	defer bd.Close()
	words := strings.Fields("the grass is green and the sky is blue one of the special magic numbers for the key is 7319 retrieval augmented generation reuses the cache of every chunk that the retriever returns here we go there and back again")
	type q struct {
		QueryID  string   `parquet:"query_id"`
		Question string   `parquet:"question"`
		ChunkIDs []string `parquet:"chunk_ids,list"`
	}
	var cs []benchChunk
	for i := 0; i < 16; i++ {
		var sb strings.Builder
		for j := i; sb.Len() < 2000; j++ {
			sb.WriteString(words[(j*7+i)%len(words)])
			sb.WriteByte(' ')
		}
		full := sb.String()
		// The shortest prefix of 256 tokens: token counts grow by at most one
		// per byte added, so one is met on the way.
		text := ""
		for k := 1; k <= len(full); k++ {
			ids, err := bd.ChunkIDs(full[:k])
			if err != nil {
				tb.Fatal(err)
			}
			if len(ids) == 256 {
				text = full[:k]
				break
			}
		}
		if text == "" {
			tb.Fatalf("chunk %d: no prefix of 256 tokens", i)
		}
		cs = append(cs, benchChunk{fmt.Sprintf("c%02d", i), text})
	}
	var qs []q
	for i := 0; i < n; i++ {
		ids := make([]string, 8)
		for j := range ids {
			ids[j] = fmt.Sprintf("c%02d", (i+j*3)%16)
		}
		qs = append(qs, q{fmt.Sprintf("q%03d", i), fmt.Sprintf("What is the special magic number for key-%d?", i), ids})
	}
	return writeCorpusQuestions(tb, dir, cs, qs)
}
